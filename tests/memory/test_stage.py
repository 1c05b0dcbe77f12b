"""VLM2Stage streaming: chunked == one pass exactly, separate memories per video, reset between videos,
state_dict round trip, gradients into every module, all-off identity, config validation."""

from __future__ import annotations

import io

import pytest
import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.memory import VideoSteps, VLM2Config, VLM2Stage, VLM2State

FIELDS = ("tokens", "geometry", "view", "coords", "coords_valid")


def config(seed: int | None = None, **kw) -> VLM2Config:
    if seed is not None:
        torch.manual_seed(seed)
    base = dict(llm_dim=16, spatial_dim=8, num_heads=2, num_frequencies=4, working_size=3, episodic_size=4,
                zero_init=False)
    return VLM2Config(**{**base, **kw})


def stage(**kw) -> VLM2Stage:
    torch.manual_seed(kw.pop("seed", 0))
    return VLM2Stage(config(**kw))


def video(steps: int, n: int = 6, seed: int = 0, view_dim: int = 8) -> VideoSteps:
    g = torch.Generator().manual_seed(seed)
    valid = torch.rand(steps, n, generator=g) > 0.3
    valid[0] = False  # the first step has no point: the scale comes from the next one
    return VideoSteps(torch.randn(steps, n, 16, generator=g), torch.randn(steps, n, 64, generator=g),
                      torch.randn(steps, 2, view_dim, generator=g), 3 * torch.randn(steps, n, 3, generator=g), valid)


def chunk(v: VideoSteps, start: int, stop: int) -> VideoSteps:
    out = v.chunk(start, stop)
    assert all(torch.equal(getattr(out, f), getattr(v, f)[start:stop]) for f in FIELDS)
    return out


def same_state(a: VLM2State, b: VLM2State) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("cuts", [(3,), (1, 4), (2, 3, 5, 6)])
@pytest.mark.parametrize("seed", range(4))
def test_chunked_streaming_equals_one_pass_exactly(cuts, seed):
    """Past both capacities (L_w = 3, L_e = 4, 9 steps); the scale is set at step 1 of the first chunk. At D = 64
    (wide enough for the CPU GEMMs to round differently when a batch of 9 steps becomes 3 + 6), outputs and states
    must still be bit-identical: the stage never lets chunk sizes into a tensor shape."""
    module = VLM2Stage(config(llm_dim=64, spatial_dim=64, num_heads=4, seed=seed))
    g = torch.Generator().manual_seed(seed)
    v = VideoSteps(torch.randn(9, 12, 64, generator=g), torch.randn(9, 12, 512, generator=g),
                   torch.randn(9, 2, 64, generator=g), torch.randn(9, 12, 3, generator=g),
                   torch.rand(9, 12, generator=g) > 0.2)
    with torch.no_grad():
        whole, (end,) = module([v])
        parts, state = [], None
        for start, stop in zip((0, *cuts), (*cuts, 9)):
            (out,), (state,) = module([chunk(v, start, stop)], [state])
            parts.append(out)
    assert torch.equal(torch.cat(parts), whole[0])
    assert same_state(state, end) and state.steps == 9
    assert state.memory.working.count.tolist() == [3] and state.memory.episodic.count.tolist() == [4]


def test_state_dict_round_trip_resumes_exactly(tmp_path):
    module = stage()
    v = video(7)
    with torch.no_grad():
        whole, _ = module([v])
        _, (state,) = module([chunk(v, 0, 4)])
        buffer = io.BytesIO()
        torch.save(state.state_dict(), buffer)
        buffer.seek(0)
        restored = VLM2State.from_state_dict(torch.load(buffer))
        (rest,), _ = module([chunk(v, 4, 7)], [restored])
    assert torch.equal(rest, whole[0][4:])


def test_separate_memories_per_video_in_a_batch():
    """Three videos in one call (two grids, unequal lengths) = each alone; changing one leaves the others alone."""
    module = stage()
    videos = [video(5, seed=1), video(7, seed=2), video(4, n=4, seed=3)]
    with torch.no_grad():
        batched, states = module(videos)
        for v, out, state in zip(videos, batched, states):
            (alone,), (alone_state,) = module([v])
            torch.testing.assert_close(out, alone, atol=1e-6, rtol=1e-6)
            assert state.steps == v.steps
            assert state.memory.working.entries.shape[0] == 1
        changed = [videos[0], video(7, seed=9), videos[2]]
        again, _ = module(changed)
    assert torch.equal(again[0], batched[0]) and torch.equal(again[2], batched[2])
    assert not torch.allclose(again[1], batched[1])


def test_memory_resets_between_videos():
    module = stage()
    a, b = video(6, seed=4), video(5, seed=5)
    with torch.no_grad():
        _, (after_a,) = module([a])
        (fresh,), _ = module([b])
        (reset,), _ = module([b], [None])  # None = a new video
        (carried,), _ = module([b], [after_a])
    assert torch.equal(reset, fresh)
    assert not torch.allclose(carried, fresh)  # continuing A's memories is a different computation


def test_gradients_reach_every_trainable_module():
    module = stage(fusion_mlp_ratio=2)
    videos = [video(5, seed=1), video(3, seed=2)]
    for v in videos:
        v.tokens.requires_grad_(True)
    outs, _ = module(videos)
    assert outs[0].shape == (5, 6, 16) and outs[1].shape == (3, 6, 16)
    sum(o.pow(2).sum() for o in outs).backward()
    for name, param in module.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all() and bool(param.grad.abs().sum() > 0), name
    assert {n.split(".")[0] for n, _ in module.named_parameters()} == {"injection", "alignment", "fusion", "memory"}


def test_everything_off_is_the_identity_and_fresh_modules_are_too():
    v = video(4)
    off = VLM2Stage(config(**{k: False for k in VLM2Config.off().switches}))
    assert not list(off.parameters())
    assert torch.equal(off([v])[0][0], v.tokens)
    fresh = VLM2Stage(config(zero_init=True))
    with torch.no_grad():
        assert torch.equal(fresh([v])[0][0], v.tokens)


@pytest.mark.parametrize("switch", ["coordinate_injection", "viewpoint_alignment", "cross_attention_fusion",
                                    "working_memory", "episodic_memory"])
def test_each_switch_removes_its_module_and_changes_the_output(switch):
    changes = {switch: False}
    if switch == "cross_attention_fusion":
        changes["viewpoint_alignment"] = False
    full, ablated = stage(), stage(**changes)
    ablated.load_state_dict({k: v for k, v in full.state_dict().items() if k in ablated.state_dict()})
    v = video(6)
    with torch.no_grad():
        assert not torch.allclose(full([v])[0][0], ablated([v])[0][0])
    assert len(list(ablated.parameters())) < len(list(full.parameters()))


def test_pose_encoding_view_source_and_input_checks():
    module = stage(view_source="pose_encoding")
    assert module.alignment.view_dim == 9 and module.alignment.view_norm is None
    out, _ = module([video(3, view_dim=9)])
    assert out[0].shape == (3, 6, 16)
    with pytest.raises(ShapeError, match=r"videos\[0\]\.view must be \(3, 2, 9\)"):
        module([video(3, view_dim=8)])
    _, (state,) = module([video(3, view_dim=9)])
    with pytest.raises(ShapeError, match="a new one"):
        module([video(3, n=4, view_dim=9)], [state])


def test_config_reports_every_problem_and_round_trips():
    with pytest.raises(ConfigError) as err:
        VLM2Config(gate="tanh", num_heads=3, llm_dim=16, viewpoint_alignment=True, cross_attention_fusion=False,
                   working_size=0)
    text = str(err.value)
    for part in ("gate='tanh'", "num_heads=3 does not divide", "needs cross_attention_fusion", "working_size=0"):
        assert part in text
    cfg = config(similarity="mean_token", gate="softmax")
    assert VLM2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="unknown VLM2Config keys"):
        VLM2Config.from_dict({**cfg.to_dict(), "memroy": 1})
    assert VLM2Config.off().active is False and VLM2Config.paper().working_size == 8
    assert VLM2Config.paper().episodic_size == 32
