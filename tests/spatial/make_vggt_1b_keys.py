"""Write vggt_1b_keys.tsv: every parameter key and shape of the released facebook/VGGT-1B ``model.safetensors``
(aggregator, camera head, depth head, point head; ``track_head.*`` is left out: posevlm ignores it).

The table is derived from the published architecture, module by module, independently of
``posevlm.spatial.vggt`` (nothing here imports it), so the key test fails if the model's names or shapes drift:

- aggregator: DINOv2 ViT-L/14 with 4 registers at 518 px (``vit_large(img_size=518, patch_size=14,
  num_register_tokens=4, init_values=1.0, block_chunks=0)``: cls_token, pos_embed for 37 x 37 + 1, register_tokens,
  mask_token, patch_embed.proj, 24 blocks without qk-norm, norm) as ``aggregator.patch_embed``; ``camera_token``
  (1, 2, 1, 1024) and ``register_token`` (1, 2, 4, 1024); 24 frame and 24 global blocks of width 1024 with
  qk-norm (LayerNorm over the 64-wide head dim, weight and bias) and LayerScale, MLP ratio 4.
- camera_head (dim 2048): trunk of 4 blocks (no qk-norm), token_norm, trunk_norm, empty_pose_tokens (1, 1, 9),
  embed_pose 9 -> 2048, poseLN_modulation = (SiLU, Linear 2048 -> 6144), adaln_norm without affine parameters,
  pose_branch Mlp 2048 -> 1024 -> 9.
- depth_head / point_head: DPTHead(dim_in=2048, features=256, out_channels=[256, 512, 1024, 1024]) with
  output_dim 2 (depth) / 4 (points): norm, projects (1x1 convs), resize_layers (ConvTranspose 4/4, ConvTranspose
  2/2, Identity, Conv 3x3 stride 2), scratch.layer{1..4}_rn (3x3, no bias), refinenet1..3 with two residual conv
  units, refinenet4 with one (resConfUnit2 only), out_conv 1x1, output_conv1 256 -> 128, output_conv2 =
  (Conv 128 -> 32, ReLU, Conv 32 -> output_dim).

Run: python tests/spatial/make_vggt_1b_keys.py   (rewrites the table next to this file)
"""

from __future__ import annotations

import sys
from pathlib import Path

TABLE = Path(__file__).with_name("vggt_1b_keys.tsv")


def block(prefix: str, dim: int, *, head_dim: int | None, mlp_ratio: int = 4) -> list[tuple[str, tuple[int, ...]]]:
    """A DINOv2-style block: norm1, attn.qkv, [attn.q_norm, attn.k_norm], attn.proj, ls1, norm2, mlp, ls2."""
    rows = [("norm1.weight", (dim,)), ("norm1.bias", (dim,)),
            ("attn.qkv.weight", (3 * dim, dim)), ("attn.qkv.bias", (3 * dim,))]
    if head_dim is not None:
        rows += [("attn.q_norm.weight", (head_dim,)), ("attn.q_norm.bias", (head_dim,)),
                 ("attn.k_norm.weight", (head_dim,)), ("attn.k_norm.bias", (head_dim,))]
    rows += [("attn.proj.weight", (dim, dim)), ("attn.proj.bias", (dim,)), ("ls1.gamma", (dim,)),
             ("norm2.weight", (dim,)), ("norm2.bias", (dim,)),
             ("mlp.fc1.weight", (mlp_ratio * dim, dim)), ("mlp.fc1.bias", (mlp_ratio * dim,)),
             ("mlp.fc2.weight", (dim, mlp_ratio * dim)), ("mlp.fc2.bias", (dim,)), ("ls2.gamma", (dim,))]
    return [(f"{prefix}.{name}", shape) for name, shape in rows]


def aggregator(*, dim: int, depth: int, heads: int, registers: int, patch: int, img: int, backbone_depth: int,
               conv_patch_embed: bool = False) -> list[tuple[str, tuple[int, ...]]]:
    rows: list[tuple[str, tuple[int, ...]]] = [("aggregator.camera_token", (1, 2, 1, dim)),
                                               ("aggregator.register_token", (1, 2, registers, dim))]
    if conv_patch_embed:
        rows += [("aggregator.patch_embed.proj.weight", (dim, 3, patch, patch)),
                 ("aggregator.patch_embed.proj.bias", (dim,))]
    else:
        grid = img // patch
        rows += [("aggregator.patch_embed.cls_token", (1, 1, dim)),
                 ("aggregator.patch_embed.pos_embed", (1, grid * grid + 1, dim))]
        if registers:
            rows.append(("aggregator.patch_embed.register_tokens", (1, registers, dim)))
        rows += [("aggregator.patch_embed.mask_token", (1, dim)),
                 ("aggregator.patch_embed.patch_embed.proj.weight", (dim, 3, patch, patch)),
                 ("aggregator.patch_embed.patch_embed.proj.bias", (dim,))]
        for i in range(backbone_depth):
            rows += block(f"aggregator.patch_embed.blocks.{i}", dim, head_dim=None)
        rows += [("aggregator.patch_embed.norm.weight", (dim,)), ("aggregator.patch_embed.norm.bias", (dim,))]
    for kind in ("frame_blocks", "global_blocks"):
        for i in range(depth):
            rows += block(f"aggregator.{kind}.{i}", dim, head_dim=dim // heads)
    return rows


def camera_head(*, dim: int, trunk_depth: int) -> list[tuple[str, tuple[int, ...]]]:
    rows: list[tuple[str, tuple[int, ...]]] = []
    for i in range(trunk_depth):
        rows += block(f"camera_head.trunk.{i}", dim, head_dim=None)
    rows += [("camera_head.token_norm.weight", (dim,)), ("camera_head.token_norm.bias", (dim,)),
             ("camera_head.trunk_norm.weight", (dim,)), ("camera_head.trunk_norm.bias", (dim,)),
             ("camera_head.empty_pose_tokens", (1, 1, 9)),
             ("camera_head.embed_pose.weight", (dim, 9)), ("camera_head.embed_pose.bias", (dim,)),
             ("camera_head.poseLN_modulation.1.weight", (3 * dim, dim)),
             ("camera_head.poseLN_modulation.1.bias", (3 * dim,)),
             ("camera_head.pose_branch.fc1.weight", (dim // 2, dim)), ("camera_head.pose_branch.fc1.bias", (dim // 2,)),
             ("camera_head.pose_branch.fc2.weight", (9, dim // 2)), ("camera_head.pose_branch.fc2.bias", (9,))]
    return rows


def dpt_head(name: str, *, dim: int, out_dim: int, features: int, channels: tuple[int, int, int, int],
             hidden: int) -> list[tuple[str, tuple[int, ...]]]:
    p = f"{name}."
    rows: list[tuple[str, tuple[int, ...]]] = [(p + "norm.weight", (dim,)), (p + "norm.bias", (dim,))]
    for i, c in enumerate(channels):
        rows += [(p + f"projects.{i}.weight", (c, dim, 1, 1)), (p + f"projects.{i}.bias", (c,))]
    c0, c1, _, c3 = channels
    # resize_layers 0 and 1 are ConvTranspose2d, whose weight is (in, out, k, k); 2 is an Identity (no keys)
    rows += [(p + "resize_layers.0.weight", (c0, c0, 4, 4)), (p + "resize_layers.0.bias", (c0,)),
             (p + "resize_layers.1.weight", (c1, c1, 2, 2)), (p + "resize_layers.1.bias", (c1,)),
             (p + "resize_layers.3.weight", (c3, c3, 3, 3)), (p + "resize_layers.3.bias", (c3,))]
    for i, c in enumerate(channels, start=1):
        rows.append((p + f"scratch.layer{i}_rn.weight", (features, c, 3, 3)))
    for i in (1, 2, 3, 4):
        units = (2,) if i == 4 else (1, 2)
        for u in units:
            for conv in (1, 2):
                key = p + f"scratch.refinenet{i}.resConfUnit{u}.conv{conv}"
                rows += [(key + ".weight", (features, features, 3, 3)), (key + ".bias", (features,))]
        rows += [(p + f"scratch.refinenet{i}.out_conv.weight", (features, features, 1, 1)),
                 (p + f"scratch.refinenet{i}.out_conv.bias", (features,))]
    rows += [(p + "scratch.output_conv1.weight", (features // 2, features, 3, 3)),
             (p + "scratch.output_conv1.bias", (features // 2,)),
             (p + "scratch.output_conv2.0.weight", (hidden, features // 2, 3, 3)),
             (p + "scratch.output_conv2.0.bias", (hidden,)),
             (p + "scratch.output_conv2.2.weight", (out_dim, hidden, 1, 1)),
             (p + "scratch.output_conv2.2.bias", (out_dim,))]
    return rows


def vggt_keys(*, dim: int = 1024, depth: int = 24, heads: int = 16, registers: int = 4, patch: int = 14,
              img: int = 518, backbone_depth: int = 24, conv_patch_embed: bool = False, trunk_depth: int = 4,
              features: int = 256, channels: tuple[int, int, int, int] = (256, 512, 1024, 1024),
              hidden: int = 32) -> dict[str, tuple[int, ...]]:
    """Key -> shape of VGGT with these sizes; the defaults are facebook/VGGT-1B."""
    rows = aggregator(dim=dim, depth=depth, heads=heads, registers=registers, patch=patch, img=img,
                      backbone_depth=backbone_depth, conv_patch_embed=conv_patch_embed)
    rows += camera_head(dim=2 * dim, trunk_depth=trunk_depth)
    rows += dpt_head("depth_head", dim=2 * dim, out_dim=2, features=features, channels=channels, hidden=hidden)
    rows += dpt_head("point_head", dim=2 * dim, out_dim=4, features=features, channels=channels, hidden=hidden)
    table = dict(rows)
    assert len(table) == len(rows), "duplicate key"
    return table


def render(table: dict[str, tuple[int, ...]]) -> str:
    lines = ["# key\tshape  (facebook/VGGT-1B without track_head; generated by make_vggt_1b_keys.py)"]
    lines += [f"{key}\t{','.join(map(str, shape))}" for key, shape in sorted(table.items())]
    return "\n".join(lines) + "\n"


def read(path: Path = TABLE) -> dict[str, tuple[int, ...]]:
    rows = [line.split("\t") for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {key: tuple(int(v) for v in shape.split(",")) for key, shape in rows}


if __name__ == "__main__":
    TABLE.write_text(render(vggt_keys()))
    print(f"wrote {TABLE} ({len(vggt_keys())} keys)", file=sys.stderr)
