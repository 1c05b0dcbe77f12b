"""Public names of posevlm.memory, posevlm.models.vlm2 and posevlm.point_io are deliberate (kept next to the package
rather than in tests/test_api_surface.py so the VLM² branch merges without touching that list)."""

import pytest

import posevlm.memory
import posevlm.point_io

MEMORY = {
    "VLM2Config", "CoordinateInjection", "sinusoidal_encoding", "ViewpointAlignment", "CrossAttentionFusion",
    "MemoryBank", "WorkingMemory", "EpisodicMemory", "fifo_slot", "replacement_slot", "most_similar", "write_slot",
    "DualMemory", "DualMemoryState", "VideoSteps", "VLM2State", "VLM2Stage", "point_maps_from_depth",
    "points_in_first_frame", "pool_point_maps", "pose_encoding_in_first_frame", "first_step_scale",
}
VLM2 = {"VLM2", "VLM2ModelConfig", "VLM2Inputs", "VLM2_KWARGS", "VLM2_MODEL_TYPE", "compose", "from_spatial_mllm",
        "from_pretrained", "save_pretrained"}
POINT_IO = {"PointInputs", "from_scene", "from_predictions", "model_kwargs"}


def test_memory_public_names():
    assert set(posevlm.memory.__all__) == MEMORY
    assert all(hasattr(posevlm.memory, name) for name in MEMORY)
    assert set(posevlm.point_io.__all__) == POINT_IO


def test_vlm2_public_names():
    pytest.importorskip("transformers")
    import posevlm.models.vlm2 as vlm2

    assert set(vlm2.__all__) == VLM2 and all(hasattr(vlm2, name) for name in VLM2)
