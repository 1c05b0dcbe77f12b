import pytest
import torch


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """Tiny random Qwen2.5-VL / Qwen3-VL bases saved and loaded with ``from_pretrained`` (tests copy them)."""
    transformers = pytest.importorskip("transformers")
    from spatial_mllm_tiny import tiny_models

    root = tmp_path_factory.mktemp("tiny_spatial")
    q25 = tiny_models.save_tiny_qwen2_5_vl(root / "qwen2_5")
    q3 = tiny_models.save_tiny_qwen3_vl(root / "qwen3")
    return {"qwen2_5": transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(q25, dtype=torch.float32).eval(),
            "qwen3": transformers.Qwen3VLForConditionalGeneration.from_pretrained(q3, dtype=torch.float32).eval()}
