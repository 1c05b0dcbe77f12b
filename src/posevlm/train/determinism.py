"""Seeds, determinism switches and the provenance block of a training run directory.

- :func:`seed_everything` seeds Python's ``random``, NumPy, torch (CPU and every CUDA device) and, with
  ``deterministic=True``, makes torch pick deterministic kernels (``torch.use_deterministic_algorithms``; cuDNN
  deterministic, no autotuning; ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` so cuBLAS reductions are reproducible;
  ``FLASH_ATTENTION_DETERMINISTIC=1`` for flash-attn's backward). It returns what it set, for the run directory.
  Data order, dropout and the schedule are the Trainer's (``TrainingArguments.seed`` / ``data_seed``); pass the
  same seed there.
- :func:`run_provenance` is :func:`posevlm.provenance.provenance` (posevlm version, git hash, torch / transformers /
  numpy / Python versions, date) plus what a training run needs to be traced: ``git_dirty``, the versions of
  accelerate / peft / deepspeed, host, command line, launcher environment (torchrun / SLURM) and CUDA devices.
"""

from __future__ import annotations

import functools
import os
import platform
import random
import socket
import subprocess
import sys
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from posevlm.errors import ConfigError

__all__ = ["CUBLAS_WORKSPACE", "seed_everything", "run_provenance", "git_state"]

#: the cuBLAS workspace setting torch asks for with deterministic algorithms (":16:8" also works, slower)
CUBLAS_WORKSPACE = ":4096:8"
_LAUNCH_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "SLURM_JOB_ID", "SLURM_JOB_NAME", "SLURM_NODELIST", "SLURM_PROCID", "CUDA_VISIBLE_DEVICES",
               "CUBLAS_WORKSPACE_CONFIG", "NCCL_P2P_DISABLE", "NCCL_IB_DISABLE")


def seed_everything(seed: int, deterministic: bool = False) -> dict[str, Any]:
    """Seed every RNG of the process and switch deterministic kernels on or off.

    Args:
        seed: a non-negative integer < 2**32 (NumPy's limit).
        deterministic: True: deterministic torch kernels (ops without one raise), cuDNN deterministic without
            benchmark, ``CUBLAS_WORKSPACE_CONFIG`` (kept if already set) and ``FLASH_ATTENTION_DETERMINISTIC``
            set; False: torch's defaults for the algorithm choice (explicitly, so a previous call is undone).
    Returns:
        ``{"seed", "deterministic", "use_deterministic_algorithms", "cudnn_deterministic", "cudnn_benchmark",
        "cublas_workspace_config"}`` as set.
    Raises:
        ConfigError: a seed outside [0, 2**32).
    Warns:
        when ``deterministic`` and CUDA was initialised before ``CUBLAS_WORKSPACE_CONFIG`` was set (cuBLAS reads
        it once): set it in the launch environment instead.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ConfigError(f"seed={seed!r}: an integer in [0, 2**32)", field="seed", value=seed)
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # CPU and every CUDA device
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        if "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                warnings.warn("seed_everything(deterministic=True) after CUDA was initialised: cuBLAS may have read "
                              "CUBLAS_WORKSPACE_CONFIG already; export CUBLAS_WORKSPACE_CONFIG=:4096:8 before "
                              "launching", RuntimeWarning, stacklevel=2)
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
        os.environ["FLASH_ATTENTION_DETERMINISTIC"] = "1"
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        torch.backends.cudnn.benchmark = False
    return {"seed": seed, "deterministic": deterministic,
            "use_deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
            "cudnn_deterministic": torch.backends.cudnn.deterministic,
            "cudnn_benchmark": torch.backends.cudnn.benchmark,
            "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def git_state(root: str | Path) -> dict[str, Any]:
    """``{"git": commit hash, "git_dirty": tracked files modified?, "git_branch": branch}`` of the checkout at
    ``root`` (all None when it is not a git checkout or git is missing). Untracked files do not count."""
    root = Path(root)
    head = _git(root, "rev-parse", "HEAD")
    if not head:
        return {"git": None, "git_dirty": None, "git_branch": None}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    branch = _git(root, "rev-parse", "--abbrev-ref", "HEAD")
    return {"git": head.strip(), "git_dirty": None if status is None else bool(status.strip()),
            "git_branch": branch.strip() if branch else None}


@functools.lru_cache(maxsize=1)
def _posevlm_checkout() -> dict[str, Any]:
    """git_state of the checkout posevlm is imported from (``src/posevlm`` -> repository root)."""
    import posevlm

    root = Path(posevlm.__file__).resolve().parents[2]
    return git_state(root) if (root / ".git").exists() else {"git": None, "git_dirty": None, "git_branch": None}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _cuda() -> dict[str, Any]:
    if not torch.cuda.is_available():
        return {"available": False, "version": torch.version.cuda, "devices": []}
    devices = []
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        devices.append({"index": index, "name": props.name, "capability": f"{props.major}.{props.minor}",
                        "total_memory_gib": round(props.total_memory / 2**30, 2)})
    return {"available": True, "version": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "devices": devices}


def run_provenance(**extra: Any) -> dict[str, Any]:
    """The provenance block of a training run directory (JSON-ready).

    Keys: ``posevlm``, ``git`` (hash of the posevlm checkout, None for an installed wheel), ``git_dirty``,
    ``git_branch``, ``python``, ``torch``, ``transformers``, ``numpy``, ``accelerate``, ``peft``, ``deepspeed``
    (None when not installed), ``date`` (UTC ISO), ``hostname``, ``platform``, ``argv`` (``sys.argv``),
    ``launch_env`` (the set ones of RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT, SLURM_*, CUDA_VISIBLE_DEVICES,
    CUBLAS_WORKSPACE_CONFIG, NCCL_*), ``cuda`` (``available``, ``version``, ``devices``: index, name, capability,
    memory) and ``extra``.
    """
    from posevlm.provenance import provenance

    block = provenance()
    block.update(_posevlm_checkout())
    block.update({name: _version(name) for name in ("accelerate", "peft", "deepspeed")})
    block.update(hostname=socket.gethostname(), platform=platform.platform(), argv=list(sys.argv),
                 launch_env={k: os.environ[k] for k in _LAUNCH_ENV if k in os.environ}, cuda=_cuda())
    block.update(extra)
    return block
