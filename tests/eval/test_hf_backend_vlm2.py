"""The hf backend on tiny VLM² checkpoints saved to disk (``--model-type vlm2``): the family found from
``config.json``, points and views from VGGT (no extra inputs), every prompt a new video (the memory starts empty per
sample: answers in sequence = each alone, while a carried memory would change them), and ``posevlm eval`` end to end
with VGGT cameras and with the manifest's cameras."""

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
from spatial_mllm_tiny import save_tiny_vlm2  # noqa: E402

from posevlm.eval.backends.hf import BACKEND, HFBackend, HFBackendConfig  # noqa: E402
from posevlm.eval.frames import FrameSpec  # noqa: E402
from posevlm.eval.prompts import GenerationSettings  # noqa: E402
from posevlm.eval.run_store import RunStore  # noqa: E402

GEN = GenerationSettings(max_new_tokens=4)
PIXELS = {"min_pixels": 4 * 28 * 28, "max_pixels": 6 * 28 * 28}  # 48x64 frames -> 56x56


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield save_tiny_vlm2(tmp_path_factory.mktemp("tiny_vlm2_eval") / "vlm2")


def frames(n: int, seed: int) -> FrameSpec:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(90, n, replace=False))
    return FrameSpec(ids, rng.integers(0, 256, (n, 48, 64, 3), dtype=np.uint8), ids / 30.0, 30.0, 90,
                     {"source": "synthetic", "seed": seed})


BATCH = [("How many chairs are in this room?", frames(4, 1)), ("Which is closer, the sofa or the door?", frames(6, 2)),
         ("Size?", frames(4, 3))]


def _logits(backend, item, **extra) -> torch.Tensor:
    inputs, _ = backend._prepare([item])
    with torch.no_grad():
        return backend.model(**inputs, **extra).logits


def test_a_vlm2_checkpoint_loads_as_its_family_and_starts_every_prompt_as_a_new_video(checkpoint):
    backend = HFBackend(HFBackendConfig(model=str(checkpoint), batch_size=1, **PIXELS))
    info = backend.info
    assert info["family"] == "vlm2" and info["model_class"] == "VLM2"
    stage = info["spatial_mllm"]["vlm2"]
    assert stage["coordinate_injection"] and stage["episodic_memory"] and stage["point_source"] == "vggt"
    assert backend.model.load_report.ok and any(k.startswith("vlm2.") for k in backend.model.load_report.loaded)
    in_sequence = [r.text for r in backend.generate(BATCH, generation=GEN)]
    alone = [backend.generate([item], generation=GEN)[0].text for item in reversed(BATCH)][::-1]
    assert in_sequence == alone
    batched = HFBackend(HFBackendConfig(model=str(checkpoint), batch_size=3, family="vlm2", **PIXELS))
    assert [r.text for r in batched.generate(BATCH, generation=GEN)] == in_sequence
    # the equality is not vacuous: the second prompt continuing the first one's memory answers differently
    fresh = _logits(backend, BATCH[1])
    backend.generate([BATCH[0]], generation=GEN)
    carried = _logits(backend, BATCH[1], memory_state=backend.model.memory_states)
    assert not torch.allclose(fresh, carried)
    torch.testing.assert_close(_logits(backend, BATCH[1]), fresh, rtol=0, atol=0)


def test_model_type_vlm2_resolves():
    cli = {"model": "m", "frames_root": "x", "batch_size": 1}
    assert BACKEND.model_config({**cli, "model_type": "vlm2"})["family"] == "vlm2"
    assert BACKEND.model_config({**cli, "model_type": "spatial-mllm-vlm2"})["family"] == "vlm2"


def _eval(world: Path, model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    args = [sys.executable, "-m", "posevlm", "eval", "--benchmark", "synthetic_vsi", "--source",
            str(world / "bench.jsonl"), "--limit", "4", "--backend", "hf", "--model-type", "vlm2", "--model",
            str(model), "--dtype", "float32", "--frames", "folder_manifest", "--frames-root",
            str(world / "sampled" / SAMPLER.slug), "--num-frames", str(N), "--out", str(out),
            "--backend-set", "min_pixels=3136", "--backend-set", "max_pixels=4704", *extra]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_posevlm_eval_runs_a_tiny_vlm2_checkpoint_with_vggt_or_manifest_cameras(world, checkpoint, tmp_path):
    """`posevlm eval --backend hf --model-type vlm2 --model <dir>`: the default configuration (points and views
    from VGGT) answers every sample; with camera attention the cameras come from VGGT's head or, with
    --backend-set pose_source=manifest, from the frame manifests."""
    for name, flags, cameras_from in (("vggt", ("--batch-size", "2"), None),
                                      ("manifest", ("--positions", "thw", "--camera-attention", "prope",
                                                    "--backend-set", "pose_source=manifest"), "manifest")):
        out = tmp_path / name
        proc = _eval(world, checkpoint, out, *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        records = RunStore(out).scan()
        assert len(records) == 4 and all(r["status"] == "ok" for r in records.values()), records
        assert all(isinstance(r["raw_output"], str) and r["frames"]["n_visual_tokens"] > 0 for r in records.values())
        model_cfg = json.loads((out / "run_config.json").read_text())["config"]["model"]
        assert model_cfg["family"] == "vlm2"
        (info,) = [i for starts in RunStore(out).backend_info().values() for i in starts]
        assert info["family"] == "vlm2" and info["spatial_mllm"]["cameras_from"] == cameras_from
