"""The ``point_lm`` training family: ``posevlm train`` of a :class:`~posevlm.models.point_lm.PointCloudLM` on
point-cloud records (:mod:`posevlm.train.points`).

``model`` section:

* ``source: tiny``: a random tiny Qwen2 decoder (widths, layers and heads from ``model.tiny``, the
  :class:`~posevlm.train.tiny.TinyModelConfig` fields; the tokenizer and chat template of the tiny checkpoint the
  recipe writes first) composed with :meth:`PointCloudLM.compose`;
* ``source``: a PointCloudLM checkpoint (``config.json`` with ``posevlm_point_lm``: loaded, options ignored) or a
  stock Qwen2 / Qwen2.5 / Qwen3 causal LM (directory or hub id: composed);
* ``point_lm``: the composition options (:class:`PointLMOptions`): ``rope3d`` (a preset of ``posevlm list rope3d``
  or a ``MixedRoPE3DConfig`` mapping), ``encoder`` (``PointEncoderConfig`` fields), ``projector`` (``linear`` /
  ``mlp2``);
* positions, camera attention and pose bias do not apply (the model reads no frames); nor does ``run.evaluate`` (the
  recipe's evaluation is the video one, so ``run.evaluate=true`` is refused): evaluate ``<output_dir>/final`` with ``posevlm eval --backend points``.

``data.datasets``: comma-separated sources of point training records: ``synthetic_train_points`` (the train split of
``<dataset_root>/synthetic_train_points``, built with the default :class:`~posevlm.train.points.PointSynthConfig` on
first use and reused), ``synthetic_test_points`` (its test split), a folder written by
:func:`~posevlm.train.points.build_point_training_set` (its ``train.jsonl``) or a records ``.jsonl``.
``data.model_max_length`` bounds the text tokens of a sample, ``data.on_error`` / ``max_skips`` the bad samples. The
synthetic point set is built by the dataset hook of each process: build it once (a single-process run, or
:func:`~posevlm.train.points.build_point_training_set`) before a multi-process launch, which then reuses it.

Freeze groups (:mod:`posevlm.train.policy`): ``point_encoder``, ``connector`` (the projector; alias ``projector``,
trained at ``optim.projector_lr``), ``rope3d`` (MixedRoPE3D's learned frequencies and mixing), ``embed``, ``llm``,
``lm_head``. Checkpoints are ``PointCloudLM.save_pretrained`` folders (``posevlm eval --backend points``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.train.families import TrainFamily

__all__ = ["PointLMOptions", "PointTextProcessor", "POINT_DATASETS", "point_records_for", "build_point_lm",
           "point_dataset", "point_collator", "point_lm_problems", "POINT_LM"]

#: the tiny checkpoint the recipe writes for ``source: tiny`` (its tokenizer and chat template are used)
POINT_LM_BASE = "qwen2_5_vl"
#: dataset name -> (folder under the dataset root, split)
POINT_DATASETS = {"synthetic_train_points": ("synthetic_train_points", "train"),
                  "synthetic_test_points": ("synthetic_train_points", "test")}


@dataclass(frozen=True)
class PointLMOptions:
    """``model.point_lm`` of a training config (module docstring)."""

    rope3d: Any = "mixed_rope3d"
    encoder: Mapping[str, Any] = field(default_factory=dict)
    projector: str = "mlp2"

    def problems(self) -> list[str]:
        from posevlm.models.point_lm import PROJECTORS
        from posevlm.positions.rope3d import rope3d_config
        from posevlm.spatial.points import PointEncoderConfig

        p = []
        try:
            rope3d_config(self.rope3d)
        except (ConfigError, TypeError) as exc:
            p.append(f"model.point_lm.rope3d={self.rope3d!r}: {exc}")
        try:
            PointEncoderConfig.from_dict(dict(self.encoder or {}))
        except (ConfigError, TypeError) as exc:
            p.append(f"model.point_lm.encoder: {exc}")
        if self.projector not in PROJECTORS:
            p.append(f"model.point_lm.projector={self.projector!r}: allowed {', '.join(PROJECTORS)}")
        return p

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "PointLMOptions":
        data = dict(data or {})
        known = {"rope3d", "encoder", "projector"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"model.point_lm: unknown key(s) {unknown}; known: {sorted(known)}",
                              field="model.point_lm", value=unknown)
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PointTextProcessor:
    """What the recipe reads as the built model's processor: a point-cloud LM has only its tokenizer (the clouds are
    voxelised by the model and the collator)."""

    tokenizer: Any


def _options(config) -> PointLMOptions:
    return PointLMOptions.from_dict(getattr(config, "point_lm", None))


def point_lm_problems(config) -> list[str]:
    """The ``point_lm`` family's checks of the ``model`` section."""
    p = []
    try:
        p += _options(config).problems()
    except ConfigError as exc:
        p.append(str(exc))
    if config.positions is not None or config.camera_attention is not None or config.pose_bias != "none":
        p.append("model.positions / camera_attention / pose_bias do not apply to model.family=point_lm (it reads no "
                 "frames; its point tokens get MixedRoPE3D: model.point_lm.rope3d)")
    return p


def _is_point_lm_checkpoint(source: str) -> bool:
    import json

    from posevlm.models.point_lm import CONFIG_KEY

    config = Path(source) / "config.json"
    return config.is_file() and CONFIG_KEY in json.loads(config.read_text())


def build_point_lm(config, work_dir: Path, dtype, hub: Mapping[str, Any], seed: int):
    """``TrainFamily.build`` of ``point_lm`` (module docstring)."""
    import torch
    import transformers

    from posevlm.models.point_lm import PointCloudLM
    from posevlm.train.families import BuiltModel
    from posevlm.train.tiny import TinyModelConfig
    from posevlm.train.trainer import prepare_source

    opts = _options(config)
    compose = {"rope3d": opts.rope3d, "encoder": dict(opts.encoder or {}), "projector": opts.projector, "seed": seed}
    source = prepare_source(config, work_dir)
    if config.source == "tiny":
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
        tiny = TinyModelConfig.from_dict(config.tiny)
        eos = tokenizer.convert_tokens_to_ids(tokenizer.eos_token)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(tiny.seed)
            decoder = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
                vocab_size=(len(tokenizer) + 15) // 16 * 16, hidden_size=tiny.hidden_size,
                intermediate_size=tiny.intermediate_size, num_hidden_layers=tiny.num_hidden_layers,
                num_attention_heads=tiny.num_attention_heads, num_key_value_heads=tiny.num_key_value_heads,
                head_dim=tiny.hidden_size // tiny.num_attention_heads, max_position_embeddings=8192,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=eos, bos_token_id=tokenizer.pad_token_id,
                attn_implementation=config.attn_implementation))
        model = PointCloudLM.compose(decoder.to(dtype), tokenizer, **compose)
        how = "composed on a tiny random Qwen2 decoder"
    elif _is_point_lm_checkpoint(source):
        model = PointCloudLM.from_pretrained(source, dtype=dtype, attn_implementation=config.attn_implementation,
                                             **hub)
        how = "PointCloudLM checkpoint"
    else:
        model = PointCloudLM.compose(source, dtype=dtype, attn_implementation=config.attn_implementation,
                                     **compose, **hub)
        how = "composed on a stock decoder"
    if model.tokenizer is None:
        raise ConfigError(f"model.source={config.source!r} has no tokenizer files; a PointCloudLM needs its tokenizer",
                          field="model.source", value=config.source)
    if config.gradient_checkpointing:
        model.decoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.decoder.config.use_cache = False
    info = {"family": "point_lm", "source": config.source, "how": how, "model_class": "PointCloudLM",
            "decoder_class": type(model.decoder).__name__, "point_lm": model.config.to_dict(),
            "mixed_rope3d": getattr(model.decoder.config, "posevlm_mixed_rope3d", None),
            "dtype": str(dtype).removeprefix("torch."), "transformers": transformers.__version__, "positions": None}
    return BuiltModel(model, PointTextProcessor(model.tokenizer), None, POINT_LM_BASE, info)


def point_records_for(config) -> list[dict[str, Any]]:
    """The point training records of ``config.data.datasets`` (module docstring), in the order named."""
    from posevlm.train.datasets import dataset_root
    from posevlm.train.points import build_point_training_set, read_point_records

    out: list[dict[str, Any]] = []
    for name in [t.strip() for t in config.data.datasets.split(",") if t.strip()]:
        if name in POINT_DATASETS:
            folder, split = POINT_DATASETS[name]
            built = build_point_training_set(dataset_root(config.data.dataset_root) / folder)
            path = built.train if split == "train" else built.test
        else:
            path = Path(name)
            path = path / "train.jsonl" if path.is_dir() else path
            if path.suffix != ".jsonl" or not path.is_file():
                raise ConfigError(f"data.datasets: {name!r} is not a point dataset ({', '.join(POINT_DATASETS)}), a "
                                  "build_point_training_set folder or a point records .jsonl", field="data.datasets",
                                  value=name)
        out += read_point_records(path)
    return out


def point_dataset(family, config, built, bad_samples):
    """``TrainFamily.dataset`` of ``point_lm``: a :class:`~posevlm.train.points.PointSFTDataset`."""
    from posevlm.train.points import PointSFTDataset

    return PointSFTDataset(point_records_for(config), built.processor.tokenizer,
                           max_length=config.data.model_max_length, bad_samples=bad_samples,
                           on_error=config.data.on_error, max_skips=config.data.max_skips)


def point_collator(family, config, built, pad_token_id: int):
    """``TrainFamily.collator`` of ``point_lm``: a :class:`~posevlm.train.points.PointCollator`."""
    from posevlm.train.points import PointCollator

    c = built.model.config
    return PointCollator((c.point_start_id, c.point_pad_id, c.point_end_id), int(pad_token_id),
                         c.encoder.token_stride)


POINT_LM = TrainFamily(
    "point_lm", POINT_LM_BASE, build_point_lm,
    description="PointCloudLM: a stock Qwen2 / Qwen3 decoder + point encoder + projector with MixedRoPE3D "
                "(model.point_lm), trained on point-cloud layout / QA records",
    dataset=point_dataset, collator=point_collator, extra_problems=point_lm_problems,
    evaluated_by="posevlm eval --backend points --model <output_dir>/final --frames point_cloud")
