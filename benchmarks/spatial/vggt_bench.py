"""VGGT-1B aggregator on CPU: time and peak activation memory of one forward, last layer only vs all 24 layers.

Target (issue 12): with the full-size architecture (random weights, float32) on 8 frames of 224x308, asking for the
last layer only keeps <= 30 % of the peak activation memory of asking for all 24 (what the reference always keeps).

Memory, two ways, both relative to the moment before the forward (weights already resident):
- peak RSS: the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs before each forward) minus
  the RSS before it. The script re-executes itself with MALLOC_MMAP_THRESHOLD_=1048576 so glibc serves every block
  over 1 MiB with mmap and returns it on free: RSS then follows live memory instead of the allocator's cache.
- peak live tensors: a TorchDispatchMode that adds the storage bytes of every tensor an op creates and subtracts
  them when the last Python reference dies (kernel scratch buffers are not seen). Run in a second forward.
Time: the same forwards as the RSS measurement (median of --repeats, modes alternating), after a 2-frame warm-up;
it includes the page faults of the mmap'ed blocks, which both modes pay.

    python benchmarks/spatial/vggt_bench.py [--frames 8] [--hw 224 308] [--repeats 1] [--no-live] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

if "MALLOC_MMAP_THRESHOLD_" not in os.environ:  # must be set before the process starts
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"})

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from benchmarks._common import environment  # noqa: E402
from posevlm.profiling import LiveTensorBytes  # noqa: E402
from posevlm.spatial.vggt import VGGT, VGGTConfig  # noqa: E402

MIB = 2 ** 20


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1))


def forward_rss(model: VGGT, images: torch.Tensor, layers: tuple[int, ...]) -> tuple[float, float, int]:
    """(seconds, peak RSS above the pre-forward RSS in MiB, number of layers returned)."""
    gc.collect()
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.aggregate(images, layers=layers)
    seconds = time.perf_counter() - t0
    peak = _status_kib("VmHWM") - before
    kept = len(out.tokens)
    del out
    return seconds, peak / 1024, kept


def forward_live(model: VGGT, images: torch.Tensor, layers: tuple[int, ...]) -> float:
    """Peak live tensor bytes (MiB) of one forward."""
    gc.collect()
    with torch.inference_mode(), LiveTensorBytes() as meter:
        out = model.aggregate(images, layers=layers)
        del out
    return meter.peak / MIB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--hw", type=int, nargs=2, default=(224, 308))
    parser.add_argument("--repeats", type=int, default=1, help="forwards per mode (median time, max RSS)")
    parser.add_argument("--no-live", action="store_true", help="skip the live-tensor measurement (2 forwards less)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    H, W = args.hw
    cfg = VGGTConfig.vggt_1b(heads=())
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = VGGT(cfg).eval()
    init_s = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    images = torch.rand(1, args.frames, 3, H, W, generator=torch.Generator().manual_seed(0))
    gh, gw = H // cfg.patch_size, W // cfg.patch_size
    N = cfg.patch_start_idx + gh * gw
    layer_mib = args.frames * N * cfg.token_dim * 4 / MIB
    print(environment())
    print(f"VGGT-1B aggregator (random init, {params / 1e6:.0f} M parameters, built in {init_s:.0f} s), CPU float32, "
          f"{args.frames} frames {H}x{W} (grid {gh}x{gw}, N = {N} tokens/frame; one stored layer = "
          f"{layer_mib:.1f} MiB), MALLOC_MMAP_THRESHOLD_={os.environ['MALLOC_MMAP_THRESHOLD_']}")
    with torch.inference_mode():
        model.aggregate(images[:, :2], layers=-1)  # warm-up
    modes = {"last layer (-1)": (cfg.depth - 1,), f"all {cfg.depth} layers": tuple(range(cfg.depth))}
    runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in modes}
    for repeat in range(args.repeats):  # alternate the order so drift in machine load hits both modes
        for name in (list(modes) if repeat % 2 == 0 else list(modes)[::-1]):
            runs[name].append(forward_rss(model, images, modes[name]))
            seconds, rss, _ = runs[name][-1]
            print(f"  run {repeat + 1}, {name}: {seconds:.1f} s, peak RSS +{rss:.0f} MiB", flush=True)
    rows = {name: {"layers_returned": r[0][2], "seconds": statistics.median(x[0] for x in r),
                   "peak_rss_mib": max(x[1] for x in r), "seconds_all": [x[0] for x in r]} for name, r in runs.items()}
    if not args.no_live:
        for name, layers in modes.items():
            rows[name]["peak_live_tensors_mib"] = forward_live(model, images, layers)
    last, every = rows.values()
    print(f"\n{'mode':<18} {'layers':>6} {'time s':>7} {'peak RSS MiB':>13} {'peak live tensors MiB':>22}")
    for name, row in rows.items():
        live = f"{row['peak_live_tensors_mib']:.0f}" if "peak_live_tensors_mib" in row else "-"
        print(f"{name:<18} {row['layers_returned']:>6} {row['seconds']:>7.1f} {row['peak_rss_mib']:>13.0f} {live:>22}")
    ratio_rss = last["peak_rss_mib"] / every["peak_rss_mib"]
    ratio_live = last["peak_live_tensors_mib"] / every["peak_live_tensors_mib"] if not args.no_live else None
    live_text = f", live tensors {ratio_live:.3f}" if ratio_live is not None else ""
    print(f"ratio last/all: time {last['seconds'] / every['seconds']:.2f}, peak RSS {ratio_rss:.3f}{live_text} "
          f"(target <= 0.30: {'met' if max(ratio_rss, ratio_live or 0) <= 0.30 else 'NOT met'})")
    if args.json:
        args.json.write_text(json.dumps({"env": environment(), "frames": args.frames, "hw": [H, W],
                                         "layer_mib": layer_mib, "rows": rows, "ratio_rss": ratio_rss,
                                         "ratio_live": ratio_live}, indent=2))


if __name__ == "__main__":
    main()
