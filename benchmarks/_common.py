"""Timing helpers for benchmark scripts: warm-up, median of repeats, environment line."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Callable


def median_ms(fn: Callable[[], object], *, repeats: int = 20, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def environment() -> str:
    import numpy
    import torch

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        sha = "?"
    return (f"env: python {platform.python_version()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"numpy {numpy.__version__}, {os.cpu_count()} cpus, {platform.processor() or platform.machine()}, "
            f"commit {sha or '?'}")
