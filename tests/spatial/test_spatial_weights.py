"""Loading VGGT checkpoints from fabricated safetensors files on disk (released key layout): bit-exact round
trips, key reports (missing, unexpected, ignored track_head / unbuilt heads, shape mismatches), sharded
checkpoints, hub ids from a local cache without network, the dtype policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from posevlm.spatial.vggt import VGGT, VGGTConfig, load_vggt
from posevlm.spatial.weights import (
    CheckpointError,
    KeyReport,
    compare_keys,
    resolve_checkpoint,
    resolve_precision,
    save_weights,
)


def _trained_like(config: VGGTConfig, seed: int = 0) -> VGGT:
    """A tiny model whose every parameter is random (not the init), so a load that skips a key shows."""
    torch.manual_seed(seed)
    model = VGGT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
        model.camera_head.pose_branch.fc2.bias[6:] = 0.25  # finite cameras
    return model


def _checkpoint(tmp_path: Path, model: VGGT, *, extra: dict | None = None, drop: tuple[str, ...] = ()) -> Path:
    state = {k: v for k, v in model.state_dict().items() if k not in drop}
    state["track_head.feature_extractor.norm.weight"] = torch.ones(8)  # the released file carries the tracker
    state.update(extra or {})
    return save_weights(state, tmp_path / "ckpt" / "model.safetensors")


CFG = VGGTConfig.tiny(patch_embed="dinov2")


def test_save_load_round_trip_is_bit_exact_and_reports_the_tracker_as_ignored(tmp_path):
    source = _trained_like(CFG)
    path = _checkpoint(tmp_path, source)
    loaded = load_vggt(path.parent, config=CFG, device="cpu")
    report = loaded.load_report
    assert report.ok and report.ignored == ("track_head.feature_extractor.norm.weight",)
    assert len(report.loaded) == len(source.state_dict())
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    frames = torch.rand(1, 3, 3, 28, 42)
    a, b = source.predict(frames), loaded.predict(frames)
    assert torch.equal(a.pose_enc, b.pose_enc) and torch.equal(a.depth, b.depth)
    assert torch.equal(a.world_points, b.world_points)
    assert not any(p.is_meta for p in loaded.parameters())
    assert "1 ignored (track_head.*)" in report.summary()


def test_unexpected_keys_fail_strict_loading_in_one_line(tmp_path):
    path = _checkpoint(tmp_path, _trained_like(CFG), extra={"aggregator.scale_token": torch.zeros(1, 2, 1, 32)})
    with pytest.raises(CheckpointError) as err:
        load_vggt(path, config=CFG, device="cpu")
    message = str(err.value)
    assert "\n" not in message
    assert "1 unexpected (aggregator.scale_token)" in message and "Fix:" in message
    assert err.value.report.unexpected == ("aggregator.scale_token",)


def test_missing_keys_are_named_and_non_strict_loading_keeps_the_rest(tmp_path):
    source = _trained_like(CFG)
    path = _checkpoint(tmp_path, source, drop=("aggregator.camera_token", "camera_head.trunk_norm.bias"))
    with pytest.raises(CheckpointError, match=r"2 missing \(aggregator.camera_token, camera_head.trunk_norm.bias\)"):
        load_vggt(path, config=CFG, device="cpu")
    loaded = load_vggt(path, config=CFG, device="cpu", strict=False)
    assert loaded.load_report.missing == ("aggregator.camera_token", "camera_head.trunk_norm.bias")
    assert torch.equal(loaded.aggregator.register_token, source.aggregator.register_token)
    assert not torch.equal(loaded.aggregator.camera_token, source.aggregator.camera_token)  # kept its init


def test_shape_mismatches_name_both_shapes(tmp_path):
    path = _checkpoint(tmp_path, _trained_like(VGGTConfig.tiny(num_register_tokens=2)))
    with pytest.raises(CheckpointError, match=r"aggregator.register_token: checkpoint \(1, 2, 2, 32\) vs model "
                                              r"\(1, 2, 4, 32\)"):
        load_vggt(path, config=VGGTConfig.tiny(), device="cpu")


def test_heads_not_requested_are_skipped_not_unexpected(tmp_path):
    source = _trained_like(CFG)
    path = _checkpoint(tmp_path, source)
    model = load_vggt(path, config=CFG, heads=("camera",), device="cpu")
    report = model.load_report
    assert report.ok and model.depth_head is None and model.point_head is None
    assert {k.split(".")[0] for k in report.ignored} == {"depth_head", "point_head", "track_head"}
    frames = torch.rand(1, 2, 3, 28, 28)
    assert torch.equal(model.predict(frames).pose_enc, source.predict(frames, heads=("camera",)).pose_enc)


def test_sharded_checkpoint_with_an_index(tmp_path):
    source = _trained_like(CFG)
    state = source.state_dict()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[: len(keys) // 2],
              "model-00002-of-00002.safetensors": keys[len(keys) // 2:]}
    for name, part in shards.items():
        save_weights({k: state[k] for k in part}, tmp_path / name)
    index = {"metadata": {}, "weight_map": {k: name for name, part in shards.items() for k in part}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert len(resolve_checkpoint(tmp_path)) == 2
    loaded = load_vggt(tmp_path, config=CFG, device="cpu")
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())


def test_hub_id_from_the_local_cache_offline(tmp_path, monkeypatch):
    import huggingface_hub.constants

    source = _trained_like(VGGTConfig.tiny())
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--vggt-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    save_weights(source, repo / "snapshots" / commit / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_vggt("acme/vggt-tiny", config=VGGTConfig.tiny(), device="cpu")
    assert loaded.load_report.ok and loaded.load_report.source == "acme/vggt-tiny"
    assert torch.equal(loaded.aggregator.camera_token, source.aggregator.camera_token)
    with pytest.raises(CheckpointError, match=r"acme/absent not found in the local cache \(offline\).*hf download"):
        load_vggt("acme/absent", config=VGGTConfig.tiny(), device="cpu")


def test_unreachable_hub_falls_back_to_the_cache_at_once(tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--vggt-tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    save_weights(_trained_like(VGGTConfig.tiny()), repo / "snapshots" / commit / "model.safetensors")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    with pytest.warns(UserWarning, match="hub unreachable.*cached copy of acme/vggt-tiny"):
        assert load_vggt("acme/vggt-tiny", config=VGGTConfig.tiny(), device="cpu").load_report.ok
    with pytest.raises(CheckpointError, match="not in the local cache and the hub is unreachable.*127.0.0.1:9"):
        resolve_checkpoint("acme/absent")


def test_paths_that_are_not_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_checkpoint(tmp_path / "nothing")
    (tmp_path / "model.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"model.pt: convert"):
        resolve_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="not a .safetensors file"):
        resolve_checkpoint(tmp_path / "model.pt")
    (tmp_path / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_vggt(tmp_path, config=VGGTConfig.tiny(), device="cpu")


def test_compare_keys_is_pure_and_complete():
    report = compare_keys({"a": (2,), "b": (3,), "c": (1,)}, {"a": (2,), "b": (4,), "t.x": (1,), "z": (1,)},
                          ignore=("t.",), source="mem")
    assert report == KeyReport("mem", loaded=("a",), missing=("c",), unexpected=("z",), ignored=("t.x",),
                               mismatched=(("b", (4,), (3,)),))
    assert not report.ok
    assert report.to_dict()["mismatched"] == [["b", [4], [3]]]


def test_bf16_storage_keeps_the_heads_in_float32(tmp_path):
    path = _checkpoint(tmp_path, _trained_like(CFG))
    model = load_vggt(path, config=CFG, device="cpu", dtype=torch.bfloat16)
    assert model.aggregator.patch_embed.pos_embed.dtype == torch.bfloat16
    assert model.aggregator.global_blocks[1].mlp.fc2.weight.dtype == torch.bfloat16
    for head in (model.camera_head, model.depth_head, model.point_head):
        assert all(p.dtype == torch.float32 for p in head.parameters())
    pred = model.predict(torch.rand(1, 2, 3, 28, 28))
    assert pred.pose_enc.dtype == torch.float32 and bool(torch.isfinite(pred.world_points).all())


def test_precision_policy():
    assert resolve_precision("auto", "cpu") is None and resolve_precision("fp32", "cpu") is None
    assert resolve_precision("bf16", "cpu") == torch.bfloat16
    with pytest.raises(Exception, match="choose one of auto, fp32, bf16, fp16"):
        resolve_precision("int8", "cpu")
