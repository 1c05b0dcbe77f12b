"""A collated batch trains: a tiny Qwen2.5-VL forward with labels gives the masked next-token cross-entropy, and a
pose-aware model (PTHW positions) consumes the packed cameras (the loss depends on them) and back-propagates."""

import copy

import pytest
import torch

from posevlm.models import enable_pose_positions
from posevlm.positions import position_spec
from posevlm.train import IGNORE_INDEX, SFTCollator
from test_collate import mixed  # noqa: F401  (the module fixture: 4- and 6-frame samples with cameras)


@pytest.fixture(scope="module")
def stock(tiny_qwen):
    from transformers import Qwen2_5_VLForConditionalGeneration

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen, dtype=torch.float32).eval()


def _batch(samples, processor, **kw):
    batch = SFTCollator(processor.tokenizer.pad_token_id, **kw)(samples)
    batch.pop("video_tchw", None)
    return batch


def test_stock_forward_loss_is_the_masked_next_token_cross_entropy(stock, mixed, processor):  # noqa: F811
    batch = _batch(mixed[0], processor)
    with torch.no_grad():
        out = stock(**batch)
    assert torch.isfinite(out.loss)
    logits, labels = out.logits[:, :-1], batch["labels"][:, 1:]
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), labels.reshape(-1),
                                                 ignore_index=IGNORE_INDEX)
    assert torch.allclose(out.loss, expected, atol=1e-5)
    assert int((labels != IGNORE_INDEX).sum()) == 2 + 5  # "3" + <|im_end|>, "1.25" (4 bytes) + <|im_end|>


def test_pose_aware_forward_consumes_the_packed_cameras(stock, mixed, processor):  # noqa: F811
    model = enable_pose_positions(copy.deepcopy(stock), position_spec("pthw"))
    batch = _batch(mixed[0], processor, pose_inputs="cameras")
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    with torch.no_grad():
        static = dict(batch, w2c_opencv=[torch.eye(4).expand_as(w).clone() for w in batch["w2c_opencv"]])
        stock_loss = stock(**_batch(mixed[0], processor)).loss
        assert not torch.allclose(model(**static).loss, out.loss.detach())  # the cameras reach the positions
        assert not torch.allclose(stock_loss, out.loss.detach())
