"""MixedRoPE3D rotary application vs the stock 1D RoPE application, for a prefill of point tokens.

Shape (SpatialLM1.1-Qwen-0.5B): 8,192 point tokens, 14 query heads, 2 key/value heads, head_dim 64, 24 layers.
Timed per layer, on the same q / k:

* stock: transformers' Qwen2 ``apply_rotary_pos_emb(q, k, cos, sin)`` with the shared (B, L, D) tables;
* ours: ``apply_rotary`` with MixedRoPE3D's per-head query (B, 14, L, D) and key (B, 2, L, D) tables, learned
  per-axis x per-head frequencies and learned axial mixing (the ``mixed_rope3d`` preset, parameters perturbed);
* the tables: built once per forward and shared by every layer (``MixedRoPE3D.tables``; stock: the Qwen2 rotary
  module), reported as such and amortised over the layers.

Each repeat times stock and ours back to back and the ratio is the median of the per-repeat ratios, so a noisy
shared machine moves both sides alike. Target: application ratio <= 1.5.

    python benchmarks/positions/mixed_rope3d_bench.py [--tokens 8192] [--repeats 15] [--dtype float32] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment  # noqa: E402
from posevlm.positions import MixedRoPE3D, MixedRoPE3DConfig, apply_rotary  # noqa: E402


def paired_ms(a, b, repeats: int, warmup: int = 3) -> tuple[float, float, float]:
    """Median ms of ``a``, of ``b`` and the median of the per-repeat ratios b / a (timed back to back)."""
    for _ in range(warmup):
        a(), b()
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a()
        t1 = time.perf_counter()
        b()
        t2 = time.perf_counter()
        ta.append((t1 - t0) * 1e3)
        tb.append((t2 - t1) * 1e3)
    return statistics.median(ta), statistics.median(tb), statistics.median(y / x for x, y in zip(ta, tb))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--heads", type=int, default=14)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import transformers
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding, apply_rotary_pos_emb

    torch.manual_seed(0)
    dtype = getattr(torch, args.dtype)
    L, H, Hk, D = args.tokens, args.heads, args.kv_heads, args.head_dim
    q, k = torch.randn(1, H, L, D, dtype=dtype), torch.randn(1, Hk, L, D, dtype=dtype)
    stock_rotary = Qwen2RotaryEmbedding(Qwen2Config(hidden_size=H * D, num_attention_heads=H, num_key_value_heads=Hk,
                                                    rope_parameters={"rope_type": "default", "rope_theta": 1e6}))
    rope = MixedRoPE3D(MixedRoPE3DConfig(init_noise=0.1), head_dim=D, num_heads=H, num_kv_heads=Hk, rope_theta=1e6)
    with torch.no_grad():
        for p in rope.parameters():
            p.add_(0.05 * torch.randn_like(p))
    seq = torch.arange(L)[None]
    coords = torch.randint(0, 40, (1, L, 3)).float()  # voxel-token grid coordinates
    points = torch.ones(1, L, dtype=torch.bool)
    x = torch.zeros(1, 1, dtype=dtype)
    with torch.inference_mode():
        cos, sin = stock_rotary(x, seq)
        tables = rope.tables(seq, coords, points, dtype=dtype)

        def stock_apply():
            return apply_rotary_pos_emb(q, k, cos, sin)

        def ours_apply():
            return apply_rotary(q, tables.cos_q, tables.sin_q), apply_rotary(k, tables.cos_k, tables.sin_k)

        stock_ms, ours_ms, apply_ratio = paired_ms(stock_apply, ours_apply, args.repeats)
        stock_tab_ms, ours_tab_ms, _ = paired_ms(lambda: stock_rotary(x, seq),
                                                 lambda: rope.tables(seq, coords, points, dtype=dtype), args.repeats)
    per_layer_stock = stock_ms + stock_tab_ms / args.layers
    per_layer_ours = ours_ms + ours_tab_ms / args.layers
    table_mb = sum(t.numel() * t.element_size() for t in tables) / 2**20
    result = {"tokens": L, "heads": H, "kv_heads": Hk, "head_dim": D, "layers": args.layers, "dtype": args.dtype,
              "stock_apply_ms": stock_ms, "ours_apply_ms": ours_ms, "apply_ratio": apply_ratio,
              "stock_tables_ms": stock_tab_ms, "ours_tables_ms": ours_tab_ms,
              "per_layer_ratio_tables_amortised": per_layer_ours / per_layer_stock, "ours_tables_mb": table_mb,
              "targets": {"apply_ratio": 1.5}}
    print(f"{environment()}, transformers {transformers.__version__}, median of {args.repeats} paired repeats after "
          "3 warmup")
    print(f"{L} point tokens, {H} heads / {Hk} kv heads, head_dim {D}, {args.dtype}; tables shared by {args.layers} "
          f"layers ({table_mb:.0f} MB of per-head tables)")
    print(f"{'per layer':<36}{'stock ms':>10}{'ours ms':>10}{'ratio':>8}{'target':>8}")
    print(f"{'rotary application (q and k)':<36}{stock_ms:>10.2f}{ours_ms:>10.2f}{apply_ratio:>8.2f}{'<=1.5':>8}")
    print(f"{'tables, once per forward':<36}{stock_tab_ms:>10.2f}{ours_tab_ms:>10.2f}"
          f"{ours_tab_ms / stock_tab_ms:>8.1f}{'':>8}")
    print(f"{'application + tables / layers':<36}{per_layer_stock:>10.2f}{per_layer_ours:>10.2f}"
          f"{result['per_layer_ratio_tables_amortised']:>8.2f}{'':>8}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
