"""VLM2ModelConfig: a Spatial-MLLM recipe plus its VLM² stage, and its place in ``config.json``.

A VLM² checkpoint is a Spatial-MLLM checkpoint (released key layout, ``config.json`` as
:func:`~posevlm.models.spatial_mllm.config.hf_config_dict` writes it) with three differences:

- ``model_type`` is ``spatial-mllm-vlm2`` (a plain Spatial-MLLM loader refuses it instead of silently dropping
  the trained VLM² modules);
- the ``posevlm_spatial_mllm`` block carries ``vlm2``: the :class:`~posevlm.memory.VLM2Config`;
- the weights carry ``vlm2.*`` keys (the :class:`~posevlm.memory.VLM2Stage`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.memory import VLM2Config
from posevlm.models.spatial_mllm.config import BASE_FAMILIES, CONFIG_KEY, SpatialMLLMConfig
from posevlm.models.spatial_mllm.connectors import ConnectorConfig, connectors
from posevlm.spatial.vggt import VGGTConfig

__all__ = ["VLM2ModelConfig", "VLM2_MODEL_TYPE", "VLM2_ARCHITECTURE", "split_hf_config"]

VLM2_MODEL_TYPE = "spatial-mllm-vlm2"
VLM2_ARCHITECTURE = "VLM2ForConditionalGeneration"
#: the spatial encoder VLM² needs by default: VGGT-1B with the camera head (cameras, pose encodings) and the point
#: head (point maps for coordinate injection)
DEFAULT_HEADS = ("camera", "point")


@dataclass(frozen=True)
class VLM2ModelConfig(SpatialMLLMConfig):
    """:class:`~posevlm.models.spatial_mllm.SpatialMLLMConfig` plus ``vlm2``, the
    :class:`~posevlm.memory.VLM2Config` of the stage that follows the connector.

    Base composition: Qwen2.5-VL (``base_family="qwen2_5_vl"``; Qwen3-VL is refused: its DeepStack features are not
    part of the stage), VGGT, and a fusing connector or none (``connector=None``: the VLM² paper's layout, where
    geometry enters through the cross-attention fusion only; ``add``: VLM² on top of a Spatial-MLLM). Connectors
    that add tokens (``sequence_cat``) are refused: the stage works on one token per merged cell.
    """

    spatial_config: VGGTConfig = field(default_factory=lambda: VGGTConfig.vggt_1b(heads=DEFAULT_HEADS))
    connector: ConnectorConfig | None = None
    vlm2: VLM2Config = field(default_factory=VLM2Config)

    def __post_init__(self) -> None:
        if isinstance(self.vlm2, Mapping):
            object.__setattr__(self, "vlm2", VLM2Config.from_dict(dict(self.vlm2)))
        problems: list[str] = []
        try:
            super().__post_init__()
        except ConfigError as exc:
            problems += list(exc.value) if isinstance(exc.value, list) else [str(exc)]
        v = self.vlm2
        if not isinstance(v, VLM2Config):
            problems.append(f"vlm2={v!r} (a VLM2Config or its dict)")
            raise ConfigError("invalid VLM2ModelConfig: " + "; ".join(problems), field="vlm2", value=problems)
        if self.base_family != "qwen2_5_vl":
            problems.append(f"base_family={self.base_family!r}: VLM² is built on Qwen2.5-VL (qwen2_5_vl)")
        if not isinstance(self.spatial_config, VGGTConfig) or not (self.connector is None
                                                                  or isinstance(self.connector, ConnectorConfig)):
            raise ConfigError("invalid VLM2ModelConfig: " + "; ".join(problems), field="vlm2", value=problems)
        if self.connector is not None:
            if getattr(connectors.get(self.connector.type), "extra_tokens_per_visual_token", 0):
                problems.append(f"connector {self.connector.type!r} adds tokens; VLM² needs a fusing connector (add, "
                                "v1_0, channel_cat, cross_attn) or none")
            if self.connector.llm_dim != v.llm_dim:
                problems.append(f"vlm2.llm_dim={v.llm_dim} but connector.llm_dim={self.connector.llm_dim}")
        if v.spatial_dim != self.spatial_config.token_dim:
            problems.append(f"vlm2.spatial_dim={v.spatial_dim} but the spatial encoder's tokens are "
                            f"{self.spatial_config.token_dim} wide (2 x embed_dim); set spatial_dim to match")
        heads = self.spatial_config.heads
        if v.needs_points and v.point_source == "vggt" and "point" not in heads:
            problems.append("coordinate_injection with point_source='vggt' needs the spatial encoder's point head "
                            f"(spatial_config.heads={list(heads)}): add 'point', or use point_source='given' and pass "
                            "point_maps")
        if v.needs_view and v.view_source == "pose_encoding" and "camera" not in heads:
            problems.append("view_source='pose_encoding' needs the spatial encoder's camera head "
                            f"(spatial_config.heads={list(heads)}): add 'camera', or use view_source='camera_token'")
        if problems:
            raise ConfigError("invalid VLM2ModelConfig: " + "; ".join(problems), field="vlm2", value=problems)

    @property
    def model_type(self) -> str:
        """``spatial-mllm-vlm2``."""
        return VLM2_MODEL_TYPE

    @property
    def base(self) -> SpatialMLLMConfig:
        """The base composition's config (everything but ``vlm2``)."""
        return SpatialMLLMConfig(**{f.name: getattr(self, f.name) for f in fields(SpatialMLLMConfig)})

    @classmethod
    def from_base(cls, base: SpatialMLLMConfig, vlm2: VLM2Config | Mapping[str, Any] | None = None,
                  **changes: Any) -> "VLM2ModelConfig":
        """``base`` plus a VLM² stage (default: the paper's, with ``llm_dim`` / ``spatial_dim`` of the base)."""
        data = {f.name: getattr(base, f.name) for f in fields(SpatialMLLMConfig)}
        data.update(changes)
        if vlm2 is None or isinstance(vlm2, Mapping):
            llm = base.connector.llm_dim if base.connector is not None else None
            sizes = {"spatial_dim": data["spatial_config"].token_dim, **({"llm_dim": llm} if llm else {})}
            vlm2 = VLM2Config.from_dict({**sizes, **dict(vlm2 or {})})
        return cls(**data, vlm2=vlm2)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "vlm2": self.vlm2.to_dict()}


def split_hf_config(data: Mapping[str, Any], *, source: str = "config.json") -> tuple[dict[str, Any], dict[str, Any]]:
    """A VLM² ``config.json`` dict -> (the Spatial-MLLM ``config.json`` dict it extends, the ``vlm2`` dict).

    Raises:
        ConfigError: not a VLM² checkpoint (names what it is and the loader to use).
    """
    data = dict(data)
    model_type = data.get("model_type")
    stored = dict(data.get(CONFIG_KEY) or {})
    if model_type != VLM2_MODEL_TYPE or "vlm2" not in stored:
        raise ConfigError(f"{source}: model_type {model_type!r} is not a VLM² checkpoint ({VLM2_MODEL_TYPE!r} with "
                          f"{CONFIG_KEY}.vlm2). A Spatial-MLLM checkpoint loads with SpatialMLLM.from_pretrained; "
                          "add a fresh VLM² stage to it with posevlm.models.vlm2.from_spatial_mllm",
                          field="model_type", value=model_type)
    vlm2 = stored.pop("vlm2")
    data[CONFIG_KEY] = stored
    data["model_type"] = BASE_FAMILIES[stored.get("base_family", "qwen2_5_vl")]["model_type"]
    return data, vlm2
