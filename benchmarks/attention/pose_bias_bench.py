"""Pose-distance bias inside one Qwen2.5-VL text attention layer (transformers 5.23, CPU fp32, sdpa): the stock
causal prefill without bias, the dense reference (a (B, H, L, L) float mask per layer, ``bias_impl="dense"``)
and the factored bias (extra q/k head dims, ``bias_impl="factored"``), side by side in one run.

Layout: the README worked example (16 frames at 644x476): 10 text tokens, 3,128 video tokens (8 tubelet
cameras x 391 tokens), 5 text tokens = 3,143 tokens; learned slopes (one per head, non-zero). Extra rows split
the same 3,128 video tokens over 16 and 32 cameras (what 32 / 64 frames would give): the factored form pays
E = cameras (rounded up to 8) extra head dims. Peak extra memory: the largest live allocation total during one
forward (torch profiler), minus the stock layer's.

    python benchmarks/attention/pose_bias_bench.py [--threads 1] [--repeats 8] [--cameras 8 16 32] [--backward]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from camera_attention_bench import interleaved_ms  # noqa: E402
from qwen_layer_bench import HEAD_DIM, HEADS, HIDDEN, KV_HEADS, make_layer, rotary  # noqa: E402

from benchmarks._common import environment  # noqa: E402
from posevlm.attention import bias_dims_width, pose_distance_table  # noqa: E402
from posevlm.geometry import axis_angle_to_matrix, se3_from_Rt  # noqa: E402
from posevlm.models.camera_attention import CameraContext  # noqa: E402

TEXT_BEFORE, VIDEO_TOKENS, TEXT_AFTER = 10, 3128, 5


def worked_example(cameras: int, seed: int = 0):
    """(table (1, C, C), camera_index (1, L)) of one video of ``cameras`` tubelets between two text runs."""
    g = torch.Generator().manual_seed(seed)
    rot = axis_angle_to_matrix(torch.randn(1, cameras, 3, generator=g, dtype=torch.float64) * 0.3)
    w2c = se3_from_Rt(rot, torch.randn(1, cameras, 3, generator=g, dtype=torch.float64) * 2.0).float()
    per = -(-VIDEO_TOKENS // cameras)
    video = torch.arange(VIDEO_TOKENS) // per
    ci = torch.cat([torch.full((TEXT_BEFORE,), -1), video, torch.full((TEXT_AFTER,), -1)])[None]
    return pose_distance_table(w2c), ci


def peak_mib(fn) -> float:
    """Peak of live CPU allocations made during ``fn()`` (torch profiler memory events, in time order)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    events = sorted((e for e in prof.events() if e.self_cpu_memory_usage), key=lambda e: e.time_range.start)
    live = peak = 0
    for e in events:
        live += e.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--cameras", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--backward", action="store_true", help="also time forward + backward (learned slopes)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    _, stock, _, biased = make_layer()
    length = TEXT_BEFORE + VIDEO_TOKENS + TEXT_AFTER
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, length, HIDDEN, generator=g)
    pe = rotary(length)
    rows = []
    for cameras in args.cameras:
        table, ci = worked_example(cameras)
        ctx = {impl: CameraContext(None, table, ci, impl) for impl in ("dense", "factored")}
        run = {"plain": lambda: stock(hidden_states=x, attention_mask=None, position_embeddings=pe)[0]}
        for impl, c in ctx.items():
            run[impl] = lambda c=c: biased(hidden_states=x, attention_mask=None, position_embeddings=pe,
                                           posevlm_camera=c)[0]
        with torch.inference_mode():
            dense, factored = run["dense"](), run["factored"]()
            diff = (dense - factored).abs().max().item()
            t = interleaved_ms(run, args.repeats, warmup=1)
            mem = {name: peak_mib(fn) for name, fn in run.items()}
        row = {"cameras": cameras, "length": length, "extra_dims": bias_dims_width(cameras),
               "plain_ms": t["plain_ms"], "dense_ms": t["dense_ms"], "factored_ms": t["factored_ms"],
               "dense_ratio": t["dense_ratio"], "factored_ratio": t["factored_ratio"],
               "plain_peak_mib": mem["plain"], "dense_extra_mib": mem["dense"] - mem["plain"],
               "factored_extra_mib": mem["factored"] - mem["plain"], "max_abs_diff": diff, "target": 1.3}
        if args.backward:
            row.update(backward(stock, biased, x, pe, ctx, max(2, args.repeats // 2)))
        rows.append(row)
    print(f"{environment()}; one Qwen2.5-VL text attention layer (hidden {HIDDEN}, {HEADS} heads, {KV_HEADS} KV "
          f"heads, head_dim {HEAD_DIM}), sdpa, fp32, B = 1, L = {length} ({TEXT_BEFORE} text + {VIDEO_TOKENS} video "
          f"+ {TEXT_AFTER} text), learned slopes; medians of {args.repeats} interleaved rounds, ratio = median "
          "per-round ratio to the stock causal prefill")
    print(f"{'cameras':>8}{'E':>4}{'stock ms':>10}{'dense ms':>10}{'factored ms':>13}{'dense/stock':>13}"
          f"{'factored/stock':>16}{'target':>8}{'dense +MiB':>12}{'factored +MiB':>15}{'max|Δ|':>10}")
    for r in rows:
        print(f"{r['cameras']:>8}{r['extra_dims']:>4}{r['plain_ms']:>10.1f}{r['dense_ms']:>10.1f}"
              f"{r['factored_ms']:>13.1f}{r['dense_ratio']:>13.3f}{r['factored_ratio']:>16.3f}"
              f"{'<=' + str(r['target']):>8}{r['dense_extra_mib']:>12.1f}{r['factored_extra_mib']:>15.1f}"
              f"{r['max_abs_diff']:>10.1e}")
    if args.backward:
        print("forward + backward (input and slope gradients):")
        for r in rows:
            print(f"{r['cameras']:>8} cameras: stock {r['train_plain_ms']:.0f} ms, dense {r['train_dense_ms']:.0f} ms "
                  f"({r['train_dense_ratio']:.2f}x), factored {r['train_factored_ms']:.0f} ms "
                  f"({r['train_factored_ratio']:.2f}x); max |Δ slope grad| {r['slope_grad_diff']:.1e}")
    mask = HEADS * length**2 * 4 / 2**20
    widened = lambda r: (2 * HEADS + 2 * KV_HEADS) * length * (HEAD_DIM + r["extra_dims"]) * 4 / 2**20  # noqa: E731
    copies = ", ".join(f"{r['cameras']} cameras {widened(r):.0f}" for r in rows)
    print(f"stock peak during one forward: {rows[0]['plain_peak_mib']:.1f} MiB (RoPE temporaries). Per-layer bias "
          f"tensors: dense float32 (1, {HEADS}, L, L) mask {mask:.0f} MiB; factored: widened q, k, v and output "
          f"copies (MiB): {copies}, transient and below the stock peak, hence +0. max|Δ| = dense vs factored output")
    if args.json:
        print(json.dumps(rows))


def backward(stock, biased, x, pe, ctx, repeats: int) -> dict:
    """Forward + backward timings (x and the learned slopes need gradients) and the slope-gradient gap."""
    from posevlm.models.camera_attention import SLOPES_NAME

    slopes = getattr(biased, SLOPES_NAME)
    xg = x.clone().requires_grad_(True)
    ctx = {impl: CameraContext(None, c.table, c.camera_index, impl) for impl, c in ctx.items()}  # no inference cache

    def step(layer, context=None):
        def fn():
            xg.grad, slopes.grad = None, None
            kw = {} if context is None else {"posevlm_camera": context}
            layer(hidden_states=xg, attention_mask=None, position_embeddings=pe, **kw)[0].square().mean().backward()
            return slopes.grad
        return fn

    grads = {impl: step(biased, c)().clone() for impl, c in ctx.items()}
    t = interleaved_ms({"plain": step(stock), "dense": step(biased, ctx["dense"]),
                        "factored": step(biased, ctx["factored"])}, repeats, warmup=1)
    return {"train_plain_ms": t["plain_ms"], "train_dense_ms": t["dense_ms"], "train_factored_ms": t["factored_ms"],
            "train_dense_ratio": t["dense_ratio"], "train_factored_ratio": t["factored_ratio"],
            "slope_grad_diff": (grads["dense"] - grads["factored"]).abs().max().item()}


if __name__ == "__main__":
    main()
