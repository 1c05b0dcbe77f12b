"""``posevlm train``: supervised fine-tuning from a YAML config, on one process or under torchrun / accelerate."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def train_cmd(
    config: Optional[Path] = typer.Argument(None, help="Training config (YAML; see configs/train/)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="KEY=VALUE overrides of config keys by dotted path, "
                                                    "e.g. run.max_steps=200 optim.lr=1e-5 model.positions=pthw."),
    print_config: bool = typer.Option(False, "--print-config", help="Print the resolved config (YAML) and exit."),
    print_slurm: bool = typer.Option(False, "--print-slurm", help="Print the SLURM batch script template and exit."),
) -> None:
    """Train a model: the tiny preset or a Qwen2.5-VL / Qwen3-VL / Spatial-MLLM / VLM² checkpoint (model.family;
    posevlm list train-families), with pose-aware positions and camera attention, on a dataset mix (records,
    manifests with cameras). Writes OUT (run.output_dir, default runs/train/<name>): train_config.yaml + run.json
    (resolved config, git hash, library versions), train_log.jsonl (loss per step), checkpoint-<step>/ and final/
    (each loads with posevlm eval --backend hf), bad_samples.jsonl, summary.json. Rerunning the same command resumes
    from the newest checkpoint. Launch it with torchrun --nproc_per_node N -m posevlm train ... or accelerate launch
    -m posevlm train ... for several GPUs (run.deepspeed=zero2|zero3|zero3_offload for DeepSpeed).

    Examples:

        posevlm train configs/train/tiny_synthetic.yaml

        posevlm train configs/train/tiny_vlm2_synthetic.yaml tune.policy=train=fusion,memory

        torchrun --nproc_per_node 2 -m posevlm train configs/train/qwen25vl_3b_sqa3d.yaml run.deepspeed=zero2
    """
    if print_slurm:
        from posevlm.train.templates import slurm_template

        typer.echo(slurm_template(), nl=False)
        return
    if config is None:
        raise typer.BadParameter("give a training config (see configs/train/), or --print-slurm", param_hint="CONFIG")
    from posevlm.train.config import load_train_config

    resolved = load_train_config(config, overrides or [])
    if print_config:
        import json

        import yaml

        typer.echo(yaml.safe_dump(json.loads(json.dumps(resolved.to_dict())), sort_keys=False), nl=False)
        return
    import torch

    from posevlm.train.run import train

    try:
        train(resolved, log=typer.echo)
    finally:  # under torchrun: tear the process group down, a live gloo / NCCL thread at exit can abort the process
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
