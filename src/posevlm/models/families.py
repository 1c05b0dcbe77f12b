"""Model families: the one place that knows where transformers keeps things inside a model.

Pose-aware positions, camera attention and the HF eval backend never match class names; they ask the
family of a model (found by ``config.model_type``) for its decoder layers, text rotary, rope layout,
visual-token ids, merge size and attention functions. A new family (a Spatial-MLLM wrapper, a Qwen2 text
decoder with point tokens, ...) registers a :class:`ModelFamily` in ``model_families`` (or through the
entry-point group ``posevlm.models``) and the position / camera code works on it unchanged, as far as its
attention module follows the Qwen layout (``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``head_dim``,
``scaling``, ``layer_idx``, optional ``q_norm`` / ``k_norm``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from posevlm.errors import ConfigError
from posevlm.registry import Registry

__all__ = ["ModelFamily", "model_families", "family_of", "family_for_model_type"]


def _attr_path(obj: Any, path: str) -> Any:
    for part in filter(None, path.split(".")):
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class ModelFamily:
    """Where a transformers model family keeps what posevlm patches.

    Attributes:
        name: registry name (``--family`` of the HF backend), e.g. ``qwen2_5_vl``.
        model_types: ``config.model_type`` values of checkpoints of this family.
        layout: the position layout (``posevlm.positions.PositionSpec.layout``): ``qwen2_5`` (chunked THW
            mRoPE) or ``qwen3`` (interleaved).
        model_class / processor_class: transformers class names (``from_pretrained``).
        modeling_module: the transformers module providing ``apply_rotary_pos_emb`` and
            ``eager_attention_forward`` for this family's text attention.
        text_model_path: attribute path from the top model to the text decoder (holds ``layers`` and
            ``rotary_emb``).
        text_config_path: attribute path from ``model.config`` to the text config ("" = the config itself).
        attention_forward: ``"module:function"`` of the camera-aware text attention forward installed on
            every decoder layer (``posevlm.models.camera_attention`` for the Qwen layout).
        description: one line for ``posevlm list models``.
        loader: ``"module:function"`` loading a checkpoint of a posevlm model *around* a transformers one (a
            wrapper such as Spatial-MLLM, which transformers cannot load); "" for a stock transformers family
            (``model_class.from_pretrained``). Called as ``loader(source, dtype=, device=, attn_implementation=,
            local_files_only=, revision=, processor=, positions=, slot_axis=, camera_attention=, pose_source=)``
            (``processor``: a callable ``(source, hub_kwargs) -> processor``); the model it returns installs its
            positions / camera attention itself, has ``processor`` / ``processor_source``, ``expand_inputs(inputs)``
            (the prompt its connector needs) and takes ``video_tchw`` (the resized frames, unnormalised) in
            ``generate``.
        inner_model_path: attribute path from a wrapper to the stock transformers model inside it (``qwen``);
            "" for a stock family (the model itself). ``text_model_path`` is relative to the top model.
    """

    name: str
    model_types: tuple[str, ...]
    layout: str
    model_class: str
    processor_class: str
    modeling_module: str
    text_model_path: str = "model.language_model"
    text_config_path: str = "text_config"
    attention_forward: str = "posevlm.models.camera_attention:qwen_attention_forward"
    description: str = ""
    loader: str = ""
    inner_model_path: str = ""

    # -- where things are ------------------------------------------------------------------------
    def text_model(self, model: nn.Module) -> nn.Module:
        """The text decoder (``.layers``, ``.rotary_emb``)."""
        return _attr_path(model, self.text_model_path)

    def decoder_layers(self, model: nn.Module) -> nn.ModuleList:
        return self.text_model(model).layers

    def text_config(self, config: Any) -> Any:
        return _attr_path(config, self.text_config_path)

    @property
    def wraps(self) -> bool:
        """A posevlm model around a transformers one, loaded by ``loader`` (Spatial-MLLM)."""
        return bool(self.loader)

    def inner_model(self, model: nn.Module) -> nn.Module:
        """The stock transformers model (the model itself for a stock family; ``model.qwen`` for Spatial-MLLM)."""
        return _attr_path(model, self.inner_model_path)

    def visual_token_ids(self, config: Any) -> tuple[int | None, int | None]:
        """(image token id, video token id) of the checkpoint (never hard-coded)."""
        return getattr(config, "image_token_id", None), getattr(config, "video_token_id", None)

    def spatial_merge_size(self, config: Any) -> int:
        return int(config.vision_config.spatial_merge_size)

    def tokens_per_second(self, config: Any) -> float | None:
        """The checkpoint's temporal position scale (Qwen2.5-VL), None where the family has none."""
        value = getattr(getattr(config, "vision_config", None), "tokens_per_second", None)
        return None if value is None else float(value)

    # -- functions -------------------------------------------------------------------------------
    def modeling(self):
        """The transformers modeling module (``apply_rotary_pos_emb``, ``eager_attention_forward``)."""
        return importlib.import_module(self.modeling_module)

    def attention_forward_fn(self) -> Callable[..., Any]:
        from posevlm.registry import resolve_target

        return resolve_target(self.attention_forward)

    def transformers_class(self, which: str = "model") -> type:
        import transformers

        return getattr(transformers, self.model_class if which == "model" else self.processor_class)

    def load(self, source: str, **options: Any) -> nn.Module:
        """A wrapper family's checkpoint through ``loader`` (see the attribute for the options it takes)."""
        from posevlm.registry import resolve_target

        if not self.loader:
            raise ConfigError(f"model family {self.name!r} is a stock transformers family: load it with "
                              f"{self.model_class}.from_pretrained", field="loader", value=self.name)
        return resolve_target(self.loader)(source, **options)


#: Model families (``ModelFamily``); plug-ins add families through the entry-point group ``posevlm.models``.
model_families: Registry[ModelFamily] = Registry("model family", "models")
for _family in (
    ModelFamily("qwen2_5_vl", ("qwen2_5_vl",), "qwen2_5", "Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor",
                "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
                description="Qwen2.5-VL: THW mRoPE on chunked slots [16, 24, 24], absolute-time T"),
    ModelFamily("qwen3_vl", ("qwen3_vl",), "qwen3", "Qwen3VLForConditionalGeneration", "Qwen3VLProcessor",
                "transformers.models.qwen3_vl.modeling_qwen3_vl",
                description="Qwen3-VL: interleaved THW mRoPE, timestamps as text, DeepStack visual features"),
    ModelFamily("spatial_mllm", ("spatial-mllm",), "qwen2_5", "Qwen2_5_VLForConditionalGeneration",
                "Qwen2_5_VLProcessor", "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
                text_model_path="qwen.model.language_model", inner_model_path="qwen",
                loader="posevlm.models.spatial_mllm.loading:from_pretrained",
                description="Spatial-MLLM on Qwen2.5-VL: stock Qwen2.5-VL + VGGT + connector (released layout); "
                            "VGGT cameras for pose positions / camera attention"),
    ModelFamily("spatial_mllm_qwen3", ("spatial-mllm-qwen3",), "qwen3", "Qwen3VLForConditionalGeneration",
                "Qwen3VLProcessor", "transformers.models.qwen3_vl.modeling_qwen3_vl",
                text_model_path="qwen.model.language_model", inner_model_path="qwen",
                loader="posevlm.models.spatial_mllm.loading:from_pretrained",
                description="Spatial-MLLM on Qwen3-VL: VGGT for cameras (pose-only) or fused through a connector"),
    ModelFamily("vlm2", ("spatial-mllm-vlm2",), "qwen2_5", "Qwen2_5_VLForConditionalGeneration",
                "Qwen2_5_VLProcessor", "transformers.models.qwen2_5_vl.modeling_qwen2_5_vl",
                text_model_path="qwen.model.language_model", inner_model_path="qwen",
                loader="posevlm.models.vlm2.loading:from_pretrained",
                description="VLM² on Qwen2.5-VL: Spatial-MLLM + coordinate injection, viewpoint alignment, "
                            "cross-attention fusion, dual memory (points and views from VGGT; memory reset per "
                            "prompt)"),
):
    model_families.register(_family.name, _family)


def family_for_model_type(model_type: str | None) -> ModelFamily:
    """The registered family whose ``model_types`` hold ``model_type``.

    Raises:
        ConfigError: no family handles it (lists the supported model types).
    """
    for name in model_families.names():
        family = model_families.get(name)
        if model_type in family.model_types:
            return family
    known = sorted(t for n in model_families.names() for t in model_families.get(n).model_types)
    raise ConfigError(f"model_type {model_type!r} is not a supported model family (supported: {', '.join(known)}; "
                      "a plug-in can add one through the entry-point group posevlm.models)", field="model_type",
                      value=model_type)


def family_of(model: nn.Module) -> ModelFamily:
    """The family of a loaded transformers model, from ``model.config.model_type``."""
    return family_for_model_type(getattr(getattr(model, "config", None), "model_type", None))
