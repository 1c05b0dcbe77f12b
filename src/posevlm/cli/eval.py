"""``posevlm eval``: evaluate a model (or the oracle) on VSI-Bench, SQA3D, ScanQA, the synthetic benchmark or the
point-cloud tasks (synthetic_layout, synthetic_point_qa)."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import List, Optional

import typer


def eval_cmd(
    out: Path = typer.Option(..., "--out", help="Run directory (resumes if it holds this same configuration)."),
    benchmark: str = typer.Option("vsibench", "--benchmark", help="A registered benchmark: vsibench, sqa3d, scanqa, "
                                  "synthetic_vsi, ... (posevlm list benchmarks)."),
    source: Optional[str] = typer.Option(None, "--source", help="Benchmark source: VSI-Bench local copy or hub id "
                                         "(default nyu-visionx/VSI-Bench); sqa3d / scanqa: the released annotation "
                                         "file(s), their folder or a hub dataset id; synthetic_vsi: the benchmark "
                                         ".jsonl."),
    bench_config: Optional[str] = typer.Option(None, "--bench-config", help="VSI-Bench config: full (default) | "
                                               "debiased | pruned; sqa3d split: test (default) | val | train; scanqa "
                                               "split: val (default) | train."),
    dataset: List[str] = typer.Option([], "--dataset", help="Keep only these datasets (repeatable)."),
    question_type: List[str] = typer.Option([], "--question-type", help="Keep only these question types."),
    limit: Optional[int] = typer.Option(None, "--limit", help="First N records (by id) after filters."),
    backend: str = typer.Option("hf", "--backend", help="A registered backend: hf, oracle, dummy (constant --answer, "
                                "for smoke tests), ... (posevlm list backends)."),
    backend_set: List[str] = typer.Option([], "--backend-set", help="Backend option KEY=VALUE (repeatable), e.g. "
                                          "min_pixels=3136 for hf, or any option of a plug-in backend."),
    answer: Optional[str] = typer.Option(None, "--answer", help="dummy: the answer given to every question (A)."),
    model: Optional[str] = typer.Option(None, "--model", help="hf: hub id or local directory."),
    model_type: Optional[str] = typer.Option(
        None, "--model-type", help="hf: model family (qwen2_5_vl, qwen3_vl, spatial_mllm, spatial_mllm_qwen3; "
        "posevlm list models) or a checkpoint model_type (spatial-mllm); default: from the checkpoint's config.json. "
        "Spatial-MLLM: cameras from its VGGT head (--backend-set pose_source=manifest: from the frame manifest)."),
    scenes_root: Optional[Path] = typer.Option(None, "--scenes", help="oracle: root of the synthetic scenes."),
    dtype: Optional[str] = typer.Option(None, "--dtype", help="hf: auto | float32 | bfloat16 | float16 (auto)."),
    attn: Optional[str] = typer.Option(None, "--attn", help="hf: sdpa | eager | flash_attention_2 (sdpa)."),
    frames: str = typer.Option("mp4_uniform", "--frames", help="mp4_uniform | mp4_fps | folder_manifest | "
                               "point_cloud (each scene's point cloud: synthetic_layout, synthetic_point_qa)."),
    frames_root: Path = typer.Option(..., "--frames-root", help="Videos root, or a sampled <slug> folder; "
                                     "point_cloud: the write_point_task_data folder (clouds/), cloud files or scans."),
    num_frames: int = typer.Option(16, "--num-frames", help="Frames per sample (point_cloud: frames back-projected "
                                   "when a cloud is built from a scan)."),
    rule: str = typer.Option("round_full", "--rule", help="mp4_uniform: round_full | floor_full | floor_pool128."),
    prompt: Optional[str] = typer.Option(None, "--prompt", help="official | spatial_mllm_sft | answer_tags | "
                                         "point_cloud (default: point_cloud with --frames point_cloud, as posevlm "
                                         "train's point set is prompted; else official)."),
    batch_size: int = typer.Option(1, "--batch-size"),
    shard: Optional[str] = typer.Option(None, "--shard", help="i/n; default from torchrun/accelerate or SLURM arrays."),
    stage: str = typer.Option("infer", "--stage", help="preflight (CPU checks only, writes OUT/preflight/, no "
                              "records) | infer | score (re-score stored outputs)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Run samples whose record is an error again, "
                                      "even after the automatic retries (e.g. once the input is fixed)."),
    scene: List[str] = typer.Option([], "--scene", help="Keep only these scenes (repeatable)."),
    positions: Optional[str] = typer.Option(
        None, "--positions", help="hf: pose-aware position mode (thw, thw_index, thw_without_t, thw_readapt_t, "
        "pthw, phw); pose modes need --frames folder_manifest with cameras. Default: the stock model."),
    position_set: List[str] = typer.Option([], "--position-set", help="hf: PositionSpec override KEY=VALUE "
                                           "(repeatable), e.g. pose_reference=medoid."),
    position_legacy: Optional[bool] = typer.Option(None, "--position-legacy",
                                         help="hf: the fork's next-segment rule (max + 1, transformers 4.x)."),
    camera_attention: Optional[str] = typer.Option(
        None, "--camera-attention", help="hf: prope | gta | cape camera transforms in every text attention layer "
        "(cameras from the frame manifest; prope also uses its intrinsics)."),
    pose_bias: Optional[str] = typer.Option(None, "--pose-bias", help="hf: none | alibi (fixed slopes) | learned "
                                            "(slopes from the checkpoint, else 0) pose-distance attention bias."),
    camera_set: List[str] = typer.Option([], "--camera-set", help="hf: CameraAttentionSpec override KEY=VALUE "
                                         "(repeatable), e.g. rotary_on_camera_dims=keep, reference=medoid."),
) -> None:
    """Run (or resume) one evaluation. Every sample ends as a record in OUT/records/*.jsonl, failures
    as typed errors; `posevlm report OUT` then writes the tables. The exit code is 1 when a sample of this
    shard ended in an error or has no record yet (preflight: when a check failed), 2 on bad arguments.

    Examples:

        posevlm eval --backend hf --model Qwen/Qwen2.5-VL-3B-Instruct --frames-root /data/vsibench --num-frames 16 --out runs/qwen25_u16

        posevlm eval --backend hf --model Qwen/Qwen2.5-VL-3B-Instruct --positions pthw --frames folder_manifest --frames-root runs/sampled/<slug> --num-frames 16 --out runs/qwen25_pthw16

        posevlm eval --backend hf --model /ckpt/qwen3-vl-2b --camera-attention prope --pose-bias alibi --frames folder_manifest --frames-root runs/sampled/<slug> --num-frames 16 --out runs/qwen3_prope16

        posevlm eval --backend hf --model-type spatial_mllm --model Diankun/Spatial-MLLM-v1.1-Instruct-135K --positions thw --camera-attention prope --frames-root /data/vsibench --num-frames 16 --out runs/smllm_prope16

        posevlm eval --benchmark sqa3d --source /data/sqa3d/sqa_task/balanced --backend hf --model Qwen/Qwen2.5-VL-3B-Instruct --positions pthw --frames folder_manifest --frames-root runs/sampled/<slug> --num-frames 16 --out runs/sqa3d_pthw16

        posevlm eval --benchmark synthetic_vsi --source runs/demo/benchmark.jsonl --backend oracle --scenes runs/demo/data --frames folder_manifest --frames-root runs/demo/sampled/<slug> --num-frames 16 --out runs/oracle16

        posevlm eval --benchmark synthetic_layout --source runs/train_data/synthetic_train_points/test --backend points --model runs/train/tiny_point_lm_synthetic/final --frames point_cloud --frames-root runs/train_data/synthetic_train_points/test --prompt point_cloud --out runs/point_layout
    """
    from posevlm.errors import ConfigError
    from posevlm.eval.backends import backends
    from posevlm.eval.benchmarks import benchmarks
    from posevlm.eval.runner import EvalConfig, run_eval
    from posevlm.overrides import parse_free_overrides

    filters = {"datasets": dataset or None, "question_types": question_type or None, "scenes": scene or None}
    spec = backends.get(backend)
    given = {k: v for k, v in {"answer": answer, "model": model, "model_type": model_type, "scenes": scenes_root,
                               "dtype": dtype, "attn": attn,
                               "positions": positions, "position_set": position_set, "position_legacy": position_legacy,
                               "camera_attention": camera_attention, "pose_bias": pose_bias,
                               "camera_set": camera_set}.items() if v not in (None, [], ())}
    foreign = [k for k in given if k not in spec.cli_options]
    if foreign:
        owners = {k: [n for n in backends.names() if k in backends.get(n).cli_options] for k in foreign}
        raise ConfigError("; ".join(f"--{k.replace('_', '-')} is an option of --backend {' / '.join(o) or '?'}, not "
                                    f"{backend!r}" for k, o in owners.items()), field="backend")
    model_cfg = spec.model_config({**given, "frames_root": frames_root, "batch_size": batch_size,
                                   "set": parse_free_overrides(backend_set, flag="--backend-set")})
    bench = benchmarks.get(benchmark)
    if source is None and bench.default_source is None:
        raise ConfigError(f"--benchmark {benchmark} needs --source (its question file)", field="source")
    strategy = {"folder_manifest": frames_root.name, "point_cloud": "point_cloud"}.get(frames, f"uniform_{rule}")
    frames_cfg = {"source": frames, "root": str(frames_root), "num_frames": num_frames, "rule": rule,
                  "strategy": strategy}
    # a benchmark without its own default config keeps the historical "full" (run ids stay the same)
    bench_config = bench_config if bench_config is not None else bench.default_config or "full"
    config = EvalConfig(benchmark={"name": benchmark, "source": source or bench.default_source, "config": bench_config,
                                   "filters": filters, "limit": limit},
                        model=model_cfg, frames=frames_cfg,
                        prompt=prompt or ("point_cloud" if frames == "point_cloud" else "official"),
                        batch_size=batch_size)
    summary = run_eval(config, out, shard=shard, stage=stage, retry_errors=retry_errors)
    echo = typer.echo
    if stage == "preflight":
        echo(f"preflight of run {summary.run_id} shard {summary.shard[0]}/{summary.shard[1]}: "
             f"{summary.n_shard - summary.n_skipped - summary.n_errors} samples ready, {summary.n_errors} failing "
             f"{summary.errors_by_kind or ''}; report {summary.preflight} (no records written)")
    else:
        echo(f"run {summary.run_id} shard {summary.shard[0]}/{summary.shard[1]}: {summary.n_ok} answered, "
             f"{summary.n_errors} errors {summary.errors_by_kind or ''}, {summary.n_skipped} kept; shard "
             f"{'complete' if summary.shard_complete else 'incomplete'}, run "
             f"{'complete' if summary.complete else 'incomplete'} ({summary.seconds:.1f}s)")
    if summary.failed:
        ids = sorted(summary.failed)
        kinds = collections.Counter(summary.failed.values())
        head = ", ".join(f"{i} ({summary.failed[i]})" for i in ids[:8]) + (", ..." if len(ids) > 8 else "")
        echo(f"{len(ids)} sample(s) failed ({dict(kinds)}): {head}. Details: "
             f"{summary.preflight or Path(out) / 'records'}; fix the inputs, then rerun with --retry-errors")
    if not summary.ok:
        raise typer.Exit(code=1)
