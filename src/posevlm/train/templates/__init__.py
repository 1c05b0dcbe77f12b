"""Launch templates shipped with posevlm: the SLURM batch script of ``posevlm train --print-slurm``."""

from __future__ import annotations

from importlib import resources

__all__ = ["SLURM_TEMPLATE", "slurm_template"]

SLURM_TEMPLATE = "slurm.sh"


def slurm_template() -> str:
    """The text of the SLURM batch script template (one node, torchrun, resumable)."""
    return resources.files(__name__).joinpath(SLURM_TEMPLATE).read_text(encoding="utf-8")
