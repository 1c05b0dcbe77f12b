"""Voxel tokens of point clouds: the vectorised voxelisation and encoder against naive per-point references."""

import pytest
import torch

from posevlm.errors import ConfigError, ShapeError
from posevlm.spatial.points import (
    PointEncoderConfig,
    VoxelMLPEncoder,
    build_point_encoder,
    point_encoders,
    voxelize_points,
)


def _cloud(n, seed, extent=20):
    g = torch.Generator().manual_seed(seed)
    grid = torch.randint(0, extent, (n, 3), generator=g).float()
    xyz = grid * 0.02 + torch.rand(n, 3, generator=g) * 0.02
    rgb = torch.rand(n, 3, generator=g)
    return torch.cat([grid, xyz, rgb], 1)


def _naive_tokens(cloud, stride):
    """{token voxel (x, y, z): [point rows]} with a Python loop over points."""
    tokens = {}
    for i, row in enumerate(cloud.tolist()):
        key = tuple(int(c) // stride for c in row[:3])
        tokens.setdefault(key, []).append(i)
    return tokens


def test_voxelisation_matches_a_per_point_reference():
    clouds = [_cloud(300, 0), _cloud(5, 1, extent=3), _cloud(120, 2, extent=40)]
    batch = voxelize_points(clouds, 4)
    offsets = [0, 300, 305]
    for b, (cloud, coords) in enumerate(zip(clouds, batch.coords_per_cloud())):
        ref = _naive_tokens(cloud, 4)
        assert [tuple(c) for c in coords.tolist()] == sorted(ref)  # one coordinate per token, sorted (x, y, z)
        start = int(batch.token_counts[:b].sum())
        for t, key in enumerate(sorted(ref)):
            rows = torch.nonzero(batch.token_index == start + t).flatten() - offsets[b]
            assert sorted(rows.tolist()) == ref[key]
    assert batch.token_counts.tolist() == [len(_naive_tokens(c, 4)) for c in clouds]
    assert torch.equal(batch.point_cloud, torch.repeat_interleave(torch.arange(3), torch.tensor([300, 5, 120])))


@pytest.mark.parametrize("reduce", ["amax", "mean"])
def test_encoder_pools_like_a_per_token_loop(reduce):
    torch.manual_seed(0)
    encoder = VoxelMLPEncoder(PointEncoderConfig(token_stride=5, hidden_size=16, out_size=8, reduce=reduce))
    batch = voxelize_points([_cloud(200, 3), _cloud(50, 4)], 5)
    out = encoder(batch)
    assert out.shape == (int(batch.token_counts.sum()), 8)
    h = encoder.point_mlp(encoder.point_features(batch))
    pooled = torch.stack([getattr(h[batch.token_index == t], "amax" if reduce == "amax" else "mean")(0)
                          for t in range(out.shape[0])])
    torch.testing.assert_close(out, encoder.token_mlp(pooled), rtol=1e-5, atol=1e-6)


def test_encoder_ignores_point_order_and_trains():
    torch.manual_seed(1)
    encoder = VoxelMLPEncoder(PointEncoderConfig(token_stride=4, hidden_size=16, out_size=8))
    cloud = _cloud(150, 5)
    perm = torch.randperm(150, generator=torch.Generator().manual_seed(2))
    a = encoder(voxelize_points([cloud], 4))
    b = encoder(voxelize_points([cloud[perm]], 4))
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    a.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in encoder.parameters())


def test_point_features_are_local_offsets_colours_and_scene_scaled_xyz():
    encoder = VoxelMLPEncoder(PointEncoderConfig(token_stride=4))
    cloud = torch.tensor([[0.0, 0, 0, 0, 0, 0, 0.1, 0.2, 0.3], [7, 3, 5, 0.14, 0.06, 0.28, 1, 1, 1]])
    feats = encoder.point_features(voxelize_points([cloud], 4))
    torch.testing.assert_close(feats[0, :3], torch.full((3,), 0.5 / 4 - 0.5))
    torch.testing.assert_close(feats[1, :3], torch.tensor([3.5, 3.5, 1.5]) / 4 - 0.5)
    torch.testing.assert_close(feats[:, 3:6], cloud[:, 6:9])
    torch.testing.assert_close(feats[1, 6:9], torch.tensor([0.5, 0.06 / 0.28, 1.0]))  # aspect kept


def test_inputs_and_configs_are_checked():
    with pytest.raises(ShapeError, match=r"\(N >= 1, 9\)"):
        voxelize_points([torch.zeros(4, 8)], 2)
    with pytest.raises(ShapeError, match="integers >= 0"):
        voxelize_points([torch.cat([-torch.ones(2, 3), torch.zeros(2, 6)], 1)], 2)
    with pytest.raises(ConfigError, match="token_stride"):
        voxelize_points([_cloud(4, 0)], 0)
    with pytest.raises(ConfigError) as err:
        PointEncoderConfig(token_stride=0, reduce="max")
    assert "token_stride=0" in str(err.value) and "reduce='max'" in str(err.value)
    cfg = PointEncoderConfig(token_stride=3, out_size=32)
    assert PointEncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert isinstance(build_point_encoder(cfg.to_dict()), VoxelMLPEncoder) and "voxel_mlp" in point_encoders
    with pytest.raises(ConfigError, match="Unknown point encoder"):
        build_point_encoder({"kind": "sonata"})
