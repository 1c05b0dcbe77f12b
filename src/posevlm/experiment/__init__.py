"""Experiments: a YAML grid of ``posevlm train`` + ``posevlm eval`` runs as one reproducible object.

``spec`` (load and expand a spec into named runs), ``runner`` (resumable, sharded execution and status),
``analysis`` (one report: every variant against the stock THW baseline, paired CIs from ``posevlm compare``).
"""

from posevlm.experiment.spec import (
    BASELINE, GRID_AXES, ExperimentSpec, RunPlan, Variant, expand_runs, load_spec, select_shard, variant_name,
)  # fmt: skip

__all__ = ["BASELINE", "GRID_AXES", "ExperimentSpec", "RunPlan", "Variant", "expand_runs", "load_spec",
           "select_shard", "variant_name"]
