"""Public names are deliberate: removing or renaming one must change this list too."""

import pytest

import posevlm.geometry
import posevlm.scenes
import posevlm.spatial

GEOMETRY = {
    "Cameras", "validate_w2c", "K_from_params", "fov_from_intrinsics", "intrinsics_crop", "intrinsics_denormalize",
    "intrinsics_from_fov", "intrinsics_normalize", "intrinsics_resize", "intrinsics_rotate90", "POSE_ENCODING_TYPE",
    "extrinsics_intrinsics_to_pose_encoding", "pose_encoding_to_extrinsics_intrinsics", "matrix_to_quat_wxyz",
    "matrix_to_quat_xyzw", "quat_wxyz_to_matrix", "quat_wxyz_to_xyzw", "quat_xyzw_multiply", "quat_xyzw_slerp",
    "quat_xyzw_standardize", "quat_xyzw_to_matrix", "quat_xyzw_to_wxyz", "axis_angle_to_matrix", "geodesic_angle",
    "matrix_to_axis_angle", "pairwise_geodesic_angle", "project_to_so3", "rotation_angle", "rotation_rigidity_error",
    "OPENGL_FROM_OPENCV", "c2w_opencv_to_c2w_opengl", "c2w_opengl_to_c2w_opencv", "c2w_to_w2c", "camera_centers",
    "se3_compose", "se3_from_Rt", "se3_inverse", "transform_points", "w2c_opencv_from_c2w_opengl", "w2c_to_c2w",
    "lie_scalar_pose_index", "merge_temporal_pairs", "normalize_translation_scale", "pairwise_pose_distances",
    "pose_distance_matrix", "reference_index", "rereference",
}
SCENES = {
    "Scene", "PointMaps", "FrameStore", "ImageFolderStore", "ArrayStore", "VideoStore", "VideoWriter", "write_video",
    "numeric_frame_id", "sorted_numerically", "load_scene", "detect_format", "scene_loaders", "load_native_scene",
    "write_native_scene", "GeometryPredictions", "load_predictions", "save_predictions", "scene_summary",
    "PointCloud", "scene_point_cloud", "grid_sample_points", "load_point_cloud", "save_point_cloud", "read_ply",
    "write_ply",
}

SPATIAL = {
    "SpatialEncoder", "SpatialEncoding", "spatial_encoders", "load_spatial_encoder", "resolve_layers", "VGGT",
    "VGGTConfig", "AggregatorOutput", "VGGTPrediction", "decode_pose_encoding", "load_vggt", "save_vggt", "CheckpointError",
    "KeyReport", "resolve_checkpoint", "compare_keys", "load_weights", "save_weights", "resolve_precision",
    "apply_dtype_policy", "PointBatch", "voxelize_points", "PointEncoderConfig", "PointEncoder", "VoxelMLPEncoder",
    "point_encoders", "build_point_encoder",
}


def test_geometry_public_names():
    assert set(posevlm.geometry.__all__) == GEOMETRY
    assert all(hasattr(posevlm.geometry, name) for name in GEOMETRY)


def test_scenes_public_names():
    assert set(posevlm.scenes.__all__) == SCENES
    assert all(hasattr(posevlm.scenes, name) for name in SCENES)


def test_spatial_public_names():
    assert set(posevlm.spatial.__all__) == SPATIAL
    assert all(hasattr(posevlm.spatial, name) for name in SPATIAL)


@pytest.mark.slow
def test_import_posevlm_is_light():
    import subprocess
    import sys

    code = "import sys, posevlm; print('torch' in sys.modules, 'av' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


TRAIN = {
    "BadSampleLog", "POSE_INPUT_MODES", "SFTCollator", "DataConfig", "SFTDataset", "build_sample",
    "load_train_processor", "sampled_fps", "DATASET_ROOT_ENV", "DataItem", "DatasetGroup", "DatasetSpec", "MixTerm",
    "dataset_root", "datasets", "expand_mix", "load_dataset", "load_mix", "parse_mix", "subsample_indices",
    "TRAIN_ERROR_KINDS", "MissingCamerasError", "NoAssistantTurnError", "RecordError", "SampleTooLongError",
    "FrameConfig", "ImageFolderUniform", "load_image", "load_video", "video_request", "Record", "Turn",
    "parse_record", "read_records", "TRAIN_START_INDEX", "SyntheticTrainConfig", "SyntheticTrainSet",
    "build_synthetic_training_set", "DEFAULT_SYSTEM_PROMPT", "IGNORE_INDEX", "ChatFormat", "SpecialTokens",
    "Tokenized", "render_chatml", "tokenize_conversation", "TrainConfig", "ModelSection", "TuneSection",
    "OptimSection", "RunSection", "load_train_config", "apply_overrides", "train", "prepare_run", "finish_run",
    "TrainResult", "NonFiniteStop", "FreezePolicy", "FreezeReport", "apply_freeze_policy", "parameter_groups",
    "LoraSettings", "apply_lora", "merge_lora", "optimizer_param_groups", "export_model", "load_training_state",
    "merge_lora_state_dict", "TinyModelConfig", "save_tiny_checkpoint", "seed_everything", "run_provenance",
    "DEEPSPEED_CONFIGS", "deepspeed_config", "load_spatial_encoder_weights", "PosevlmTrainer", "LossLog",
    "build_model", "NonFiniteGuard", "TrainFamily", "train_families", "BuiltModel",
}


def test_train_public_names():
    import posevlm.train

    assert set(posevlm.train.__all__) == TRAIN
    assert all(hasattr(posevlm.train, name) for name in TRAIN)


@pytest.mark.slow
def test_import_posevlm_train_does_not_import_the_trainer():
    import subprocess
    import sys

    code = "import sys, posevlm.train; print('transformers' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split() \
        == ["False"]
