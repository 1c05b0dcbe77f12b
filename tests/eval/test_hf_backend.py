"""The transformers backend end to end on tiny random Qwen2.5-VL / Qwen3-VL checkpoints saved to disk
and loaded with ``from_pretrained`` offline: generation, left-padded batches, token bookkeeping,
video metadata, OOM retry, typed errors, loading errors."""

import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from tiny_models import save_tiny_qwen2_5_vl, save_tiny_qwen3_vl  # noqa: E402

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.eval.backends._qwen_video import make_torch_video_processor  # noqa: E402
from posevlm.eval.backends.hf import (  # noqa: E402
    HFBackend, HFBackendConfig, resize_frames, video_resize_hw,
)  # fmt: skip
from posevlm.eval.errors import (  # noqa: E402
    GenerationError, ModelLoadError, OutOfMemoryError, ProcessorError,
)  # fmt: skip
from posevlm.eval.frames import FrameSpec  # noqa: E402
from posevlm.eval.prompts import GenerationSettings, get_prompt  # noqa: E402

GEN = GenerationSettings(max_new_tokens=5)
SMALL = {"qwen2_5_vl": 4 * 28 * 28, "qwen3_vl": 4 * 32 * 32}  # min_pixels: 64x48 frames stay ~56-64 px


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield {"qwen2_5_vl": save_tiny_qwen2_5_vl(root / "qwen2_5_vl"),
               "qwen3_vl": save_tiny_qwen3_vl(root / "qwen3_vl")}


@pytest.fixture(scope="module")
def backends(checkpoints):
    return {f: HFBackend(HFBackendConfig(model=str(p), min_pixels=SMALL[f], batch_size=3))
            for f, p in checkpoints.items()}


def frames(n: int, seed: int, *, fps=30.0, total=300) -> FrameSpec:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(total, n, replace=False))
    return FrameSpec(ids, rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8), ids / fps, fps, total,
                     {"source": "synthetic", "seed": seed})


RECORD = {"id": 1, "question_type": "object_counting", "question": "How many chair(s) are in this room?",
          "options": None}
BATCH = [
    (get_prompt("official").render(RECORD), frames(4, 1)),
    ("Which is closer to the door, the sofa or the table? Think of the layout.", frames(5, 2)),  # odd count
    ("Size?", frames(6, 3)),
]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_generation_records_consistent_token_counts(backends, family):
    backend = backends[family]
    results = backend.generate(BATCH, generation=GEN, sample_ids=[10, 11, 12])
    assert [r.sample_id for r in results] == [10, 11, 12]
    merge, patch = backend.merge_size, backend.patch_size
    for (prompt, spec), r in zip(BATCH, results):
        t, gh, gw = r.video_grid_thw
        assert t == math.ceil(spec.n_frames / 2)  # odd counts are padded with the last frame
        assert [gh * patch, gw * patch] == r.resized_hw
        assert r.n_visual_tokens == t * gh * gw // merge**2 > 0
        assert r.n_visual_tokens < r.n_input_tokens and 1 <= r.n_output_tokens <= GEN.max_new_tokens
        assert r.frame_ids == spec.frame_ids.tolist() and r.batch_size == 3 and isinstance(r.text, str)
        assert prompt in r.prompt and r.prompt.count("<|video_pad|>") == 1  # chat template, pre-expansion
        meta = r.video_metadata
        assert meta["mode"] == "source" and meta["frames_indices"] == r.frame_ids and meta["fps"] == 30.0
        assert set(r.timings_ms) == {"preprocess", "generate", "decode"}
        json.dumps(r.to_dict())
    if family == "qwen2_5_vl":  # Qwen2.5-VL: second_per_grid_ts = temporal_patch / sampled fps
        assert results[0].second_per_grid_ts == pytest.approx(2 / (4 / 300 * 30.0), rel=1e-6)
    else:
        assert results[0].second_per_grid_ts is None


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_left_padded_batch_equals_batch_size_one(checkpoints, backends, family):
    batched = backends[family].generate(BATCH, generation=GEN)
    single = HFBackend(HFBackendConfig(model=str(checkpoints[family]), min_pixels=SMALL[family]))
    one_by_one = single.generate(BATCH, generation=GEN)
    assert len({r.n_input_tokens for r in batched}) > 1  # the batch really was padded
    assert [r.text for r in batched] == [r.text for r in one_by_one]
    assert [r.n_input_tokens for r in batched] == [r.n_input_tokens for r in one_by_one]
    assert [r.batch_size for r in one_by_one] == [1, 1, 1]
    again = backends[family].generate(BATCH, generation=GEN)
    assert [r.text for r in again] == [r.text for r in batched]  # greedy is deterministic


def test_qwen3_timestamps_follow_the_frame_metadata(checkpoints, backends):
    spec = frames(4, 7)
    far = FrameSpec(spec.frame_ids * 3, spec.frames, None, 30.0, 3000, {})  # same pixels, later timestamps
    source = backends["qwen3_vl"]
    inputs_near, _ = source._prepare([("Q?", spec)])
    inputs_far, _ = source._prepare([("Q?", far)])
    text = source.tokenizer.decode
    near, late = text(inputs_near["input_ids"][0]), text(inputs_far["input_ids"][0])
    t = spec.frame_ids / 30.0
    assert f"<{(t[0] + t[1]) / 2:.1f} seconds>" in near and f"<{3 * (t[0] + t[1]) / 2:.1f} seconds>" in late
    listed = HFBackend(HFBackendConfig(model=str(checkpoints["qwen3_vl"]), min_pixels=SMALL["qwen3_vl"],
                                       frame_metadata="qwen_vl_utils_list"))
    inputs_list, per = listed._prepare([("Q?", far)])
    assert "<0.2 seconds>" in text(inputs_list["input_ids"][0]) and per[0]["video_metadata"]["fps"] == 2.0


def test_info_records_what_shapes_the_inputs(backends):
    info = backends["qwen2_5_vl"].info
    assert info["family"] == "qwen2_5_vl" and info["tokens_per_second"] == 2 and info["dtype"] == "float32"
    assert info["patch_size"] == 14 and backends["qwen3_vl"].info["patch_size"] == 16
    assert info["video_processor"] in ("transformers", "posevlm_torch_fallback")
    assert info["config"]["min_pixels"] == SMALL["qwen2_5_vl"] and info["transformers"]
    json.dumps(info)
    eff = backends["qwen2_5_vl"].effective_generation(GEN)
    assert eff["do_sample"] is False and eff["temperature"] is None and eff["max_new_tokens"] == 5


def test_oom_retries_at_batch_size_one_then_raises(backends, monkeypatch):
    backend = backends["qwen2_5_vl"]
    real = backend.model.generate
    seen = []

    def oom_when_batched(**kw):
        seen.append(kw["input_ids"].shape[0])
        if kw["input_ids"].shape[0] > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(**kw)

    monkeypatch.setattr(backend.model, "generate", oom_when_batched)
    results = backend.generate(BATCH, generation=GEN, sample_ids=[1, 2, 3])
    assert seen == [3, 1, 1, 1] and [r.batch_size for r in results] == [1, 1, 1]

    def always_oom(**kw):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(backend.model, "generate", always_oom)
    with pytest.raises(OutOfMemoryError) as err:
        backend.generate(BATCH[:1], generation=GEN, sample_ids=["a"])
    assert err.value.sample_id == "a" and err.value.kind == "oom" and "batch size 1" in str(err.value)


def test_processor_and_generation_failures_are_typed_and_isolated(backends, monkeypatch):
    backend = backends["qwen3_vl"]
    real_template = backend.processor.apply_chat_template

    def template(messages, **kw):
        if "BAD" in messages[0]["content"][1]["text"]:
            raise ValueError("template exploded")
        return real_template(messages, **kw)

    monkeypatch.setattr(backend.processor, "apply_chat_template", template)
    batch = [BATCH[0], ("BAD prompt", frames(4, 9)), BATCH[2]]
    with pytest.raises(ProcessorError, match="template exploded"):
        backend.generate(batch, generation=GEN)
    out = backend.generate_each(batch, generation=GEN, sample_ids=["a", "b", "c"])
    assert isinstance(out[1], ProcessorError) and out[1].sample_id == "b" and out[1].kind == "processor_error"
    assert [r.sample_id for r in (out[0], out[2])] == ["a", "c"]
    def bad_kwarg(**kw):
        raise ValueError("bad kwarg")

    monkeypatch.setattr(backend.model, "generate", bad_kwarg)
    with pytest.raises(GenerationError, match="bad kwarg"):
        backend.generate(BATCH[:1], generation=GEN)


def test_loading_errors_name_the_model_and_the_fix(checkpoints, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="not found locally.*hf download posevlm-test/absent-model"):
        HFBackend(HFBackendConfig(model="posevlm-test/absent-model"))
    with pytest.raises(ModelLoadError, match="does not exist"):
        HFBackend(HFBackendConfig(model=str(tmp_path / "missing" / "dir")))
    with pytest.raises(ModelLoadError, match="no config.json"):
        HFBackend(HFBackendConfig(model=str(tmp_path)))
    with pytest.raises(ModelLoadError, match="family='auto'"):
        HFBackend(HFBackendConfig(model=str(checkpoints["qwen3_vl"]), family="qwen2_5_vl"))
    with pytest.raises(ConfigError) as err:
        HFBackendConfig(model="x", dtype="fp8", batch_size=0, attn_implementation="flash")
    assert all(k in str(err.value) for k in ("dtype", "batch_size", "attn_implementation"))
    assert HFBackendConfig.from_dict(HFBackendConfig(model="m").to_dict()) == HFBackendConfig(model="m")


def test_video_pixel_budget_matches_qwen_vl_utils():
    # training budget of the fork: 640x480 -> 644x476 (models.md §1.2)
    assert video_resize_hw(480, 640, 16, patch_size=14, min_pixels=293216, max_pixels=324576) == (476, 644)
    assert video_resize_hw(480, 640, 16, patch_size=14) == (476, 644)  # default budget leaves it alone
    assert video_resize_hw(480, 640, 16, patch_size=16) == (480, 640)
    assert video_resize_hw(48, 64, 4, patch_size=14) == (280, 392)  # up to 128 tokens per frame
    h, w = video_resize_hw(1080, 1920, 768, patch_size=14)  # total budget caps long videos
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 128000 * 28 * 28 * 0.9 / 768 * 2
    video = resize_frames(np.zeros((3, 48, 64, 3), np.uint8) + 200, (56, 84))
    assert video.shape == (3, 3, 56, 84) and video.dtype == torch.uint8 and int(video.min()) == 200


def test_torch_video_stand_in_matches_an_explicit_patchify():
    """The stand-in rescales, normalises and lays tubelets out as [T, h/2, w/2, 2, 2 | C, 2, p, p]."""
    p, mean, std = 14, [0.48, 0.46, 0.41], [0.27, 0.26, 0.28]
    proc = make_torch_video_processor({"patch_size": p, "temporal_patch_size": 2, "merge_size": 2,
                                       "image_mean": mean, "image_std": std})
    video = torch.randint(0, 256, (4, 3, 56, 84), dtype=torch.uint8)
    out = proc(videos=[video], do_resize=False, do_sample_frames=False, cap_pixels_per_frame=False,
               return_tensors="pt")
    assert out["video_grid_thw"].tolist() == [[2, 4, 6]]
    x = (video.double() / 255 - torch.tensor(mean, dtype=torch.float64).view(3, 1, 1)) / torch.tensor(
        std, dtype=torch.float64).view(3, 1, 1)
    rows = []
    for t in range(2):
        for bh in range(2):
            for bw in range(3):
                for i in range(2):
                    for j in range(2):
                        h0, w0 = (2 * bh + i) * p, (2 * bw + j) * p
                        tubelet = x[2 * t:2 * t + 2, :, h0:h0 + p, w0:w0 + p]  # (2, C, p, p)
                        rows.append(tubelet.permute(1, 0, 2, 3).reshape(-1))
    torch.testing.assert_close(out["pixel_values_videos"].double(), torch.stack(rows), atol=1e-5, rtol=0)


def posed_frames(n: int, seed: int) -> FrameSpec:
    from posevlm.geometry import axis_angle_to_matrix

    base = frames(n, seed)
    g = torch.Generator().manual_seed(seed)
    w2c = torch.eye(4, dtype=torch.float64).repeat(n, 1, 1)
    w2c[:, :3, :3] = axis_angle_to_matrix(torch.randn(n, 3, generator=g, dtype=torch.float64))
    w2c[:, :3, 3] = torch.randn(n, 3, generator=g, dtype=torch.float64)
    K = np.tile(np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]]), (n, 1, 1))
    return FrameSpec(base.frame_ids, base.frames, base.timestamps_s, base.source_fps, base.total_frames,
                     base.provenance, w2c_opencv=w2c.numpy(), K_pixels=K, image_hw=np.tile([48, 64], (n, 1)))


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen3_vl"])
def test_stock_position_mode_reproduces_the_stock_backend(checkpoints, backends, family):
    """positions="thw" routes through posevlm's builder and rotary and must answer exactly like stock."""
    ours = HFBackend(HFBackendConfig(model=str(checkpoints[family]), min_pixels=SMALL[family], batch_size=3,
                                     positions="thw"))
    assert ours.info["positions"]["spec"]["pose"] == "none"
    assert [r.text for r in ours.generate(BATCH, generation=GEN)] == \
        [r.text for r in backends[family].generate(BATCH, generation=GEN)]


def test_pose_positions_read_each_samples_cameras_and_isolate_samples_without(checkpoints, monkeypatch):
    import posevlm.models.pose_positions as pp
    from posevlm.eval.errors import MissingInputError

    seen, real = [], pp.build_position_plan
    monkeypatch.setattr(pp, "build_position_plan", lambda tm, spec, **kw: (seen.append(kw), real(tm, spec, **kw))[1])
    backend = HFBackend(HFBackendConfig(model=str(checkpoints["qwen2_5_vl"]), min_pixels=SMALL["qwen2_5_vl"],
                                        batch_size=3, positions={"mode": "pthw", "pose_reference": "medoid"}))
    assert backend.info["positions"]["spec"]["pose_reference"] == "medoid"
    a, b = posed_frames(4, 1), posed_frames(5, 2)
    out = backend.generate_each([("Size?", a), ("Size?", frames(4, 3)), ("Size?", b)], generation=GEN,
                                sample_ids=[10, 11, 12])
    assert isinstance(out[1], MissingInputError) and out[1].sample_id == 11 and "folder_manifest" in str(out[1])
    assert [r.sample_id for r in (out[0], out[2])] == [10, 12] and all(r.text is not None for r in (out[0], out[2]))
    # the last prefill saw sample 12 alone (samples are retried one by one after the failure)
    torch.testing.assert_close(seen[-1]["w2c_opencv"][0].cpu(), torch.as_tensor(b.w2c_opencv, dtype=torch.float32))


def test_camera_attention_through_the_backend(checkpoints, backends):
    """With identity cameras and the camera block composed on the rotary dims ("keep"), GTA is exactly a no-op:
    the backend answers like stock. PRoPE with the bias runs on the manifests' cameras and intrinsics."""
    import dataclasses

    family = "qwen2_5_vl"
    posed = [(prompt, posed_frames(spec.n_frames, i)) for i, (prompt, spec) in enumerate(BATCH)]
    identity = [(p, dataclasses.replace(s, w2c_opencv=np.tile(np.eye(4), (s.n_frames, 1, 1)))) for p, s in BATCH]
    gta = HFBackend(HFBackendConfig(model=str(checkpoints[family]), min_pixels=SMALL[family], batch_size=3,
                                    camera_attention={"mode": "gta", "rotary_on_camera_dims": "keep"}))
    assert [r.text for r in gta.generate(identity, generation=GEN)] == \
        [r.text for r in backends[family].generate(BATCH, generation=GEN)]
    with pytest.warns(UserWarning, match="holds no learned slopes"):
        prope = HFBackend(HFBackendConfig(model=str(checkpoints[family]), min_pixels=SMALL[family], batch_size=3,
                                          camera_attention="prope", pose_bias="learned"))
    assert prope.info["camera_attention"]["mode"] == "prope" and prope.info["camera_attention"]["bias"] == "learned"
    assert prope.info["learned_slopes"] == "zeros"
    assert all(isinstance(r.text, str) for r in prope.generate(posed, generation=GEN))
    no_k = [(p, dataclasses.replace(s, K_pixels=None)) for p, s in posed[:1]]
    from posevlm.eval.errors import MissingInputError

    assert isinstance(prope.generate_each(no_k, generation=GEN)[0], MissingInputError)
    with pytest.raises(ConfigError, match="pose_bias"):
        HFBackendConfig(model="m", pose_bias="steep")


def test_a_posevlm_checkpoint_is_evaluated_with_its_own_spec_and_slopes(checkpoints, backends, tmp_path):
    """No flags: the spec saved in the checkpoint's config (and its learned bias slopes) is used, never a
    silently stock model; flags replace it with a warning."""
    import shutil

    import transformers

    from posevlm.models import enable_pose_positions
    from posevlm.models.camera_attention import SLOPES_NAME, CameraAttentionSpec
    from posevlm.positions import position_spec

    family, src = "qwen2_5_vl", checkpoints["qwen2_5_vl"]
    dst = tmp_path / "posevlm_ckpt"
    shutil.copytree(src, dst)
    model = transformers.Qwen2_5_VLForConditionalGeneration.from_pretrained(src, dtype=torch.float32)
    enable_pose_positions(model, position_spec("thw_index"), camera_attention=CameraAttentionSpec(bias="learned"))
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            getattr(layer.self_attn, SLOPES_NAME).copy_(torch.linspace(0.5, 2.0, 4))
    model.save_pretrained(dst)
    backend = HFBackend(HFBackendConfig(model=str(dst), min_pixels=SMALL[family], batch_size=3))
    info = backend.info
    assert info["positions_origin"] == "checkpoint" and info["positions"]["spec"]["temporal"] == "index"
    assert info["camera_attention"]["bias"] == "learned" and info["learned_slopes"] == "checkpoint"
    loaded = getattr(backend.model.model.language_model.layers[1].self_attn, SLOPES_NAME)
    assert torch.equal(loaded.detach(), torch.linspace(0.5, 2.0, 4))
    posed = [(prompt, posed_frames(spec.n_frames, i)) for i, (prompt, spec) in enumerate(BATCH)]
    assert all(isinstance(r.text, str) for r in backend.generate(posed, generation=GEN))
    with pytest.warns(UserWarning, match="replaces it"):
        other = HFBackend(HFBackendConfig(model=str(dst), min_pixels=SMALL[family], positions="thw"))
    assert other.info["positions"]["spec"]["temporal"] == "hf_time" and other.info["checkpoint_positions"] is not None
    # camera flags alone keep the checkpoint's positions and replace only its camera attention
    with pytest.warns(UserWarning, match="replaces its camera attention"):
        cams_only = HFBackend(HFBackendConfig(model=str(dst), min_pixels=SMALL[family], camera_attention="cape"))
    assert cams_only.info["positions"]["spec"]["temporal"] == "index"
    assert cams_only.info["camera_attention"]["mode"] == "cape"
