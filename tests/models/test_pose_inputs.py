"""Pose inputs from a sampling manifest, a scene and a predictions file agree on the same frames, and
reach a pose-aware model as per-video forward inputs."""

import numpy as np
import pytest
import torch

from posevlm.errors import InputFileError, ShapeError
from posevlm.models import pose_inputs
from posevlm.sampling import SamplingConfig
from posevlm.sampling.manifest import read_manifest
from posevlm.sampling.runner import run_sampling
from posevlm.scenes import save_predictions
from posevlm.scenes.native import load_native_scene
from posevlm.scenes.synthetic import SynthConfig, generate_dataset

SAMPLER = SamplingConfig("pose_fps", 6, {})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("poseworld")
    generate_dataset(root / "data" / "synthetic", 1, SynthConfig(seed=5, num_frames=30, image_hw=(48, 64), fps=3.0))
    assert run_sampling(root / "data", [SAMPLER], root / "sampled").ok
    scene_dir = next((root / "data" / "synthetic").iterdir())
    manifest = next((root / "sampled" / SAMPLER.slug).rglob("selected_frames.json"))
    return load_native_scene(scene_dir), manifest


def test_manifest_scene_and_predictions_give_the_same_cameras(world, tmp_path):
    scene, manifest = world
    from_manifest = pose_inputs.from_manifest(manifest)
    ids = from_manifest.frame_ids.tolist()
    assert ids == [s["frame_id"] for s in read_manifest(manifest)["selected"]] and len(ids) == 6
    from_scene = pose_inputs.from_scene(scene, ids)
    torch.testing.assert_close(from_manifest.w2c_opencv, from_scene.w2c_opencv)
    torch.testing.assert_close(from_manifest.K_pixels, from_scene.K_pixels)
    # a predictions file holding every frame, in shuffled order: the helper picks the asked ids in order
    order = np.random.default_rng(0).permutation(len(scene))
    cams = scene.cameras_for(scene.frame_ids[order])
    path = save_predictions(tmp_path / "p.npz", frame_ids=scene.frame_ids[order], image_hw=cams.image_hw[0].tolist(),
                            w2c_opencv=cams.w2c_opencv.numpy(), K_pixels=cams.K_pixels.numpy())
    from_preds = pose_inputs.from_predictions(path, ids)
    assert from_preds.frame_ids.tolist() == ids
    torch.testing.assert_close(from_preds.w2c_opencv, from_scene.w2c_opencv)
    assert len(pose_inputs.from_predictions(path)) == len(scene)
    with pytest.raises(InputFileError, match="no camera for frame id"):
        pose_inputs.from_predictions(path, [10_000])


def test_camera_less_manifests_and_bad_shapes_say_what_to_do(world):
    _, manifest = world
    doc = read_manifest(manifest)
    legacy = {k: v for k, v in doc.items() if k != "selected"}
    with pytest.raises(InputFileError, match="no per-frame cameras"):
        pose_inputs.from_manifest(legacy)
    with pytest.raises(ShapeError, match="w2c_opencv must be"):
        pose_inputs.PoseInputs(torch.arange(3), torch.eye(4).repeat(2, 1, 1))
    kw = pose_inputs.model_kwargs([pose_inputs.from_manifest(manifest)] * 2)
    assert [w.dtype for w in kw["w2c_opencv"]] == [torch.float32] * 2 and kw["frame_ids"][0].shape == (6,)
    assert kw["K_pixels"][0].shape == (6, 3, 3) and kw["image_hw"][0].tolist()[0] == [48, 64]


#: posevlm.models holds tensors only: the readers of manifests, scenes and predictions live in posevlm.pose_io.
NOT_BELOW_MODELS = ("posevlm.eval", "posevlm.scenes", "posevlm.sampling", "posevlm.cli")


def test_models_read_no_files_and_import_no_inputs_package():
    """Every import statement of posevlm.models (lazy ones included) stays below the input packages."""
    from layering import forbidden_static_imports

    assert forbidden_static_imports("posevlm.models", NOT_BELOW_MODELS) == {}


@pytest.mark.slow
def test_importing_models_loads_no_inputs_package():
    from layering import matching, modules_loaded_by

    loaded = modules_loaded_by("import posevlm.models\nfrom posevlm.models.pose_inputs import PoseInputs, model_kwargs")
    assert matching(loaded, (*NOT_BELOW_MODELS, "posevlm.pose_io", "posevlm.frames_io")) == []


def test_old_reader_names_resolve_to_the_input_module():
    from posevlm import pose_io
    from posevlm.models.pose_inputs import from_manifest

    assert from_manifest is pose_io.from_manifest
    assert all(getattr(pose_inputs, name) is getattr(pose_io, name) for name in pose_io.__all__)
    assert set(pose_io.__all__) <= set(pose_inputs.__all__)
    with pytest.raises(AttributeError, match="no attribute 'from_nowhere'"):
        pose_inputs.from_nowhere  # noqa: B018
