"""Training throughput of the tiny preset on synthetic scans (CPU fp32): optimiser steps per second, the share of
step time spent waiting for the data loader at 0 and 2 workers, the NaN guard's cost, and peak memory per step.

The run is the recipe of ``posevlm train configs/train/tiny_synthetic.yaml`` (tiny Qwen2.5-VL with PTHW positions,
4 frames of 56x56 per sample from sampling manifests, batch 4), driven through ``posevlm.train.run.prepare_run``
with an instrumented ``PosevlmTrainer``:

* step time: wall time between consecutive optimiser-step ends (data wait + forward + backward + optimiser +
  callbacks), median over the measured steps after ``--warmup`` steps;
* data wait: time inside ``Trainer.get_batch_samples`` (the next batch from the loader, collated); its share is
  summed wait / summed step time;
* peak memory per step: the largest total of live tensor storages created during one forward + backward
  (``posevlm.profiling.LiveTensorBytes``; weights, gradients kept from before and optimiser state excluded), and
  the process's peak resident set size.

    python benchmarks/train/train_bench.py [--steps 30] [--warmup 5] [--batch 4] [--workers 0 2] [--threads 1] [--json]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks._common import environment  # noqa: E402
from posevlm.profiling import LiveTensorBytes  # noqa: E402
from posevlm.train.config import load_train_config  # noqa: E402
from posevlm.train.run import prepare_run  # noqa: E402
from posevlm.train.trainer import PosevlmTrainer  # noqa: E402


class Instrumented(PosevlmTrainer):
    """Records the data wait and the peak live tensor bytes of one step (the first after the warm-up)."""

    warmup = 5

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.waits: list[float] = []
        self.step_ends: list[float] = []
        self.peak_bytes = 0

    def get_batch_samples(self, epoch_iterator, num_batches, device):
        t0 = time.perf_counter()
        out = super().get_batch_samples(epoch_iterator, num_batches, device)
        self.waits.append(time.perf_counter() - t0)
        return out

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.state.global_step != self.warmup:
            return super().training_step(model, inputs, num_items_in_batch)
        with LiveTensorBytes() as meter:
            loss = super().training_step(model, inputs, num_items_in_batch)
        self.peak_bytes = meter.peak
        return loss

    def _maybe_log_save_evaluate(self, *args, **kwargs):
        self.step_ends.append(time.perf_counter())
        return super()._maybe_log_save_evaluate(*args, **kwargs)


def run(data_root: Path, out: Path, *, workers: int, guard: bool, steps: int, warmup: int, batch: int) -> dict:
    from posevlm.train.guard import NonFiniteGuard

    config = load_train_config(ROOT / "configs" / "train" / "tiny_synthetic.yaml", [
        f"run.output_dir={out}", f"data.dataset_root={data_root}", f"run.max_steps={warmup + steps}",
        f"run.save_steps={10 * (warmup + steps)}", f"run.num_workers={workers}", f"run.batch_size={batch}",
        "run.evaluate=false", "optim.warmup_ratio=0"])
    Instrumented.warmup = warmup
    prepared = prepare_run(config, log=lambda _m: None, trainer_cls=Instrumented)
    trainer = prepared.trainer
    if not guard:
        trainer.remove_callback(NonFiniteGuard)
    trainer.train()
    ends = trainer.step_ends
    step_s = [b - a for a, b in zip(ends[warmup:], ends[warmup + 1:])]
    waits = trainer.waits[warmup + 1: warmup + 1 + len(step_s)]
    return {"workers": workers, "guard": guard, "batch": batch, "steps": len(step_s),
            "median_step_ms": 1e3 * statistics.median(step_s), "steps_per_s": len(step_s) / sum(step_s),
            "median_wait_ms": 1e3 * statistics.median(waits), "loader_share": sum(waits) / sum(step_s),
            "peak_step_mib": trainer.peak_bytes / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = [(w, True) for w in args.workers] + [(args.workers[0], False)]
        for k, (workers, guard) in enumerate(cases):
            rows.append(run(tmp / "data", tmp / f"run{k}", workers=workers, guard=guard, steps=args.steps,
                            warmup=args.warmup, batch=args.batch))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        print(json.dumps({"rows": rows, "peak_rss_mib": rss}, indent=2))
        return
    print(environment())
    print(f"tiny Qwen2.5-VL + PTHW, batch {args.batch}, 4 frames 56x56 per sample, median of {args.steps} steps "
          f"after {args.warmup} warm-up; peak RSS {rss:.0f} MiB")
    print(f"{'workers':>7} {'guard':>5} {'steps/s':>8} {'step ms':>8} {'wait ms':>8} {'loader share':>12} "
          f"{'peak step MiB':>13}")
    for r in rows:
        print(f"{r['workers']:>7} {'on' if r['guard'] else 'off':>5} {r['steps_per_s']:>8.2f} "
              f"{r['median_step_ms']:>8.1f} {r['median_wait_ms']:>8.1f} {100 * r['loader_share']:>11.1f}% "
              f"{r['peak_step_mib']:>13.1f}")


if __name__ == "__main__":
    main()
