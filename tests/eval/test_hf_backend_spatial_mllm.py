"""The hf backend on tiny Spatial-MLLM checkpoints saved to disk (``--model-type spatial_mllm``): the family's
loader, the processor's resized frames as video_tchw, sequence_cat's expanded prompt in left-padded batches,
cameras from VGGT or the frame manifest, and ``posevlm eval`` end to end (shards, resume)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("transformers")

from eval_world import N, SAMPLER  # noqa: E402
from spatial_mllm_tiny import save_tiny_spatial_mllm  # noqa: E402

from posevlm.errors import ConfigError  # noqa: E402
from posevlm.eval.backends.hf import BACKEND, HFBackend, HFBackendConfig  # noqa: E402
from posevlm.eval.errors import MissingInputError  # noqa: E402
from posevlm.eval.frames import FrameSpec  # noqa: E402
from posevlm.eval.prompts import GenerationSettings  # noqa: E402
from posevlm.eval.run_store import RunStore  # noqa: E402
from posevlm.models.spatial_mllm import answer  # noqa: E402

GEN = GenerationSettings(max_new_tokens=4)
PIXELS = {"min_pixels": 4 * 28 * 28, "max_pixels": 6 * 28 * 28}  # 48x64 frames -> 56x56


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_spatial_eval")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield {"add": save_tiny_spatial_mllm(root / "add"),
               "sequence_cat": save_tiny_spatial_mllm(root / "sequence_cat", connector="sequence_cat")}


def frames(n: int, seed: int, *, cameras: bool = False) -> FrameSpec:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(90, n, replace=False))
    cams = {}
    if cameras:
        w2c = np.tile(np.eye(4), (n, 1, 1))
        w2c[:, :3, 3] = rng.normal(size=(n, 3))
        cams = {"w2c_opencv": w2c, "K_pixels": np.tile([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]], (n, 1, 1)),
                "image_hw": np.tile([48, 64], (n, 1))}
    return FrameSpec(ids, rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8), ids / 30.0, 30.0, 90,
                     {"source": "synthetic", "seed": seed}, **cams)


BATCH = [("How many chairs are in this room?", frames(4, 1)), ("Which is closer, the sofa or the door?", frames(5, 2)),
         ("Size?", frames(6, 3))]


def test_sequence_cat_checkpoint_batches_like_batch_size_one_and_like_answer(checkpoints):
    """The family is found from config.json; a left-padded batch (the extra pads re-padded) answers exactly as one
    sample at a time, and as the Python API on the same frames and pixel budget."""
    folder = checkpoints["sequence_cat"]
    batched = HFBackend(HFBackendConfig(model=str(folder), batch_size=3, **PIXELS))
    info = batched.info
    assert info["family"] == "spatial_mllm" and info["model_class"] == "SpatialMLLM"
    assert info["spatial_mllm"]["connector"]["type"] == "sequence_cat" and info["positions"]["spec"]["pose"] == "none"
    results = batched.generate(BATCH, generation=GEN)
    single = HFBackend(HFBackendConfig(model=str(folder), batch_size=1, family="spatial_mllm", **PIXELS))
    assert [r.text for r in results] == [r.text for r in single.generate(BATCH, generation=GEN)]
    grids = [r.video_grid_thw for r in results]
    assert grids == [[2, 4, 4], [3, 4, 4], [3, 4, 4]]
    assert [r.n_visual_tokens for r in results] == [2 * 8, 2 * 12, 2 * 12]  # 2D + 3D tokens
    model = single.model
    for (prompt, spec), r in zip(BATCH, results):
        assert answer(model, spec, prompt, max_new_tokens=4, **PIXELS) == r.text


def test_cameras_from_vggt_or_from_the_frame_manifest(checkpoints, monkeypatch):
    """Camera attention on a Spatial-MLLM reads VGGT's cameras (frames need none); with pose_source='manifest' it
    reads each sample's manifest cameras and a sample without them fails alone."""
    import posevlm.models.spatial_mllm.model as smllm

    seen = []
    real = smllm.SpatialMLLM._pose_kwargs
    monkeypatch.setattr(smllm.SpatialMLLM, "_pose_kwargs",
                        lambda self, state, given: (seen.append(dict(given)), real(self, state, given))[1])
    vggt = HFBackend(HFBackendConfig(model=str(checkpoints["add"]), batch_size=2, camera_attention="prope", **PIXELS))
    assert vggt.info["spatial_mllm"]["cameras_from"] == "vggt" and vggt.info["camera_attention"]["mode"] == "prope"
    assert all(isinstance(r.text, str) for r in vggt.generate(BATCH[:2], generation=GEN))
    assert seen and all(g.get("w2c_opencv") is None for g in seen)  # the camera head's, decoded by the model
    seen.clear()
    manifest = HFBackend(HFBackendConfig(model=str(checkpoints["add"]), batch_size=2, camera_attention="prope",
                                         pose_source="manifest", **PIXELS))
    posed = [(p, frames(s.n_frames, i, cameras=True)) for i, (p, s) in enumerate(BATCH[:2])]
    out = manifest.generate_each([posed[0], BATCH[1], posed[1]], generation=GEN, sample_ids=[1, 2, 3])
    assert isinstance(out[1], MissingInputError) and "folder_manifest" in str(out[1])
    assert [r.sample_id for r in (out[0], out[2])] == [1, 3]
    torch.testing.assert_close(seen[-1]["w2c_opencv"][0].cpu(), torch.as_tensor(posed[1][1].w2c_opencv,
                                                                                 dtype=torch.float32))


def test_learned_pose_bias_slopes_start_at_zero_or_come_from_the_checkpoint(checkpoints, tmp_path):
    """A learned pose bias on a checkpoint without slopes loads (slopes 0, with a warning), as for stock models; a
    Spatial-MLLM saved with trained slopes is evaluated with them and its stored camera attention."""
    from posevlm.models.camera_attention import SLOPES_NAME
    from posevlm.models.spatial_mllm import from_pretrained

    with pytest.warns(UserWarning, match="holds no learned slopes"):
        fresh = HFBackend(HFBackendConfig(model=str(checkpoints["add"]), camera_attention="prope", pose_bias="learned",
                                          **PIXELS))
    assert fresh.info["learned_slopes"] == "zeros"
    model = from_pretrained(checkpoints["add"], device="cpu", local_files_only=True,
                            camera_attention={"mode": "prope", "bias": "learned"})
    slopes = [p for n, p in model.named_parameters() if n.endswith(SLOPES_NAME)]
    assert len(slopes) == 2 and all(float(p.abs().sum()) == 0 for p in slopes)
    with torch.no_grad():
        for i, p in enumerate(slopes):
            p.copy_(torch.linspace(0.1, 0.4, p.numel()).view_as(p) * (i + 1))
    model.save_pretrained(tmp_path / "trained")
    trained = HFBackend(HFBackendConfig(model=str(tmp_path / "trained"), **PIXELS))
    assert trained.info["learned_slopes"] == "checkpoint" and trained.info["camera_attention"]["bias"] == "learned"
    assert trained.info["positions_origin"] == "checkpoint"
    loaded = [p for n, p in trained.model.named_parameters() if n.endswith(SLOPES_NAME)]
    assert all(torch.equal(a, b) for a, b in zip(loaded, slopes))
    assert isinstance(trained.generate(BATCH[:1], generation=GEN)[0].text, str)


def test_model_type_and_pose_source_checks():
    """--model-type takes a family or a checkpoint model_type; pose_source belongs to Spatial-MLLM families; a
    Spatial-MLLM family needs no frame manifest for camera attention (VGGT), unless pose_source='manifest'."""
    cli = {"model": "m", "frames_root": "x", "batch_size": 1}
    assert BACKEND.model_config({**cli, "model_type": "spatial-mllm"})["family"] == "spatial_mllm"
    assert BACKEND.model_config({**cli, "model_type": "spatial_mllm_qwen3"})["family"] == "spatial_mllm_qwen3"
    with pytest.raises(ConfigError, match="--model-type 'spatial'"):
        BACKEND.model_config({**cli, "model_type": "spatial"})
    with pytest.raises(ConfigError, match="pose_source='vggt' is a Spatial-MLLM option"):
        HFBackendConfig(model="m", family="qwen2_5_vl", pose_source="vggt")
    with pytest.raises(ConfigError, match="pose_source='gps'"):
        HFBackendConfig(model="m", pose_source="gps")
    mp4 = {"source": "mp4_uniform", "root": "videos", "num_frames": 8}
    model = {"backend": "hf", "model": "m", "camera_attention": "prope"}
    assert BACKEND.check({**model, "family": "spatial_mllm"}, mp4) == []
    assert BACKEND.check({**model, "family": "qwen2_5_vl"}, mp4) != []
    assert BACKEND.check({**model, "family": "spatial_mllm", "pose_source": "manifest"}, mp4) != []
    assert BACKEND.check({**model, "family": "spatial_mllm", "positions": "pthw"}, mp4) == []


def test_a_stock_checkpoint_refuses_pose_source(tmp_path, monkeypatch):
    from tiny_models import save_tiny_qwen2_5_vl

    from posevlm.eval.errors import ModelLoadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = save_tiny_qwen2_5_vl(tmp_path / "stock")
    with pytest.raises(ModelLoadError, match="Spatial-MLLM option"):
        HFBackend(HFBackendConfig(model=str(folder), pose_source="vggt"))
    with pytest.raises(ModelLoadError, match="is a qwen2_5_vl checkpoint but family='spatial_mllm'"):
        HFBackend(HFBackendConfig(model=str(folder), family="spatial_mllm"))


def _eval(world: Path, model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi", "--source",
            str(world / "bench.jsonl"), "--limit", "4", "--backend", "hf", "--model-type", "spatial_mllm", "--model",
            str(model), "--dtype", "float32", "--frames", "folder_manifest", "--frames-root",
            str(world / "sampled" / SAMPLER.slug), "--num-frames", str(N), "--out", str(out),
            "--backend-set", "min_pixels=3136", "--backend-set", "max_pixels=4704", *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_posevlm_eval_runs_a_tiny_spatial_mllm_checkpoint_in_shards_and_resumes(world, checkpoints, tmp_path):
    """`posevlm eval --backend hf --model-type spatial_mllm --model <dir>` with positions, camera attention (VGGT
    cameras), a batch size and two shards; a rerun resumes (every record kept) and exits 0."""
    out = tmp_path / "run"
    flags = ("--positions", "thw", "--camera-attention", "prope", "--batch-size", "2")
    for shard in ("0/2", "1/2"):
        proc = _eval(world, checkpoints["add"], out, *flags, "--shard", shard)
        assert proc.returncode == 0, proc.stderr[-3000:]
    records = RunStore(out).scan()
    assert len(records) == 4 and all(r["status"] == "ok" for r in records.values()), records
    rec = next(iter(records.values()))
    assert isinstance(rec["raw_output"], str) and rec["frames"]["n_visual_tokens"] > 0
    model_cfg = json.loads((out / "run_config.json").read_text())["config"]["model"]
    assert model_cfg["family"] == "spatial_mllm" and model_cfg["camera_attention"] == "prope"
    infos = [i for starts in RunStore(out).backend_info().values() for i in starts]
    assert len(infos) == 2 and all(i["family"] == "spatial_mllm" and i["spatial_mllm"]["cameras_from"] == "vggt"
                                   for i in infos)
    again = _eval(world, checkpoints["add"], out, *flags, "--shard", "0/2")
    assert again.returncode == 0 and " 0 answered" in again.stdout and "kept" in again.stdout, again.stdout
    assert RunStore(out).scan() == records
    seq = _eval(world, checkpoints["sequence_cat"], tmp_path / "seq", "--positions", "thw_readapt_t")
    assert seq.returncode == 0, seq.stderr[-3000:]
    assert all(r["status"] == "ok" for r in RunStore(tmp_path / "seq").scan().values())
