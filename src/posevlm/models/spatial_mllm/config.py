"""SpatialMLLMConfig: what a Spatial-MLLM is made of, and its place in the checkpoint's ``config.json``.

A Spatial-MLLM checkpoint's ``config.json`` (models spec §1.1, §6.3) is the base Qwen config plus three blocks:

- the base model's fields. Qwen2.5-VL: the released (transformers 4.51) layout keeps the text fields at the top
  level (``hidden_size``, ``num_hidden_layers``, ``rope_scaling``, ...) next to ``vision_config``; transformers
  >= 4.52 nests them in ``text_config``. :func:`hf_config_dict` writes both (4.51 readers see the top level,
  5.x readers ``text_config``); :func:`read_hf_config` accepts either;
- ``spatial_config``: the spatial encoder (released: ``img_size``, ``patch_size``, ``embed_dim``; posevlm writes
  the whole :class:`~posevlm.spatial.VGGTConfig`);
- ``connector_config``: released ``{"connector_type": "mlp_add", "spatial_embeds_layer_idx": -1, "use_visual",
  "use_geo"}``; posevlm adds the :class:`ConnectorConfig` fields (``null`` for a pose-only model);
- ``posevlm_spatial_mllm``: the :class:`SpatialMLLMConfig` fields that have no released spelling (pose source,
  positions, camera attention).

The fork's checkpoints carry ``pose_rope_config`` (``use_pose_rope``, ``pose_enc_type`` ``PTHW`` / ``PHW`` /
``THW``, ``mrope_section``); :func:`positions_from_pose_rope_config` reads it into a position mode.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace
from typing import Any, Mapping

from posevlm.errors import ConfigError
from posevlm.models.camera_attention import CameraAttentionSpec
from posevlm.models.spatial_mllm.connectors import ConnectorConfig
from posevlm.positions import PositionSpec, chunked_slot_axis, position_spec
from posevlm.spatial.vggt import VGGTConfig

__all__ = ["SpatialMLLMConfig", "BASE_FAMILIES", "POSE_SOURCES", "MODEL_TYPES", "CONFIG_KEY", "hf_config_dict",
           "read_hf_config", "positions_from_pose_rope_config"]

#: base model family -> transformers class, processor class, Spatial-MLLM ``model_type``, layout, patch size key
BASE_FAMILIES: dict[str, dict[str, str]] = {
    "qwen2_5_vl": {"model_class": "Qwen2_5_VLForConditionalGeneration", "config_class": "Qwen2_5_VLConfig",
                   "processor_class": "Qwen2_5_VLProcessor", "model_type": "spatial-mllm", "layout": "qwen2_5",
                   "architecture": "SpatialMLLMForConditionalGeneration",
                   "base_repo": "Qwen/Qwen2.5-VL-3B-Instruct"},
    "qwen3_vl": {"model_class": "Qwen3VLForConditionalGeneration", "config_class": "Qwen3VLConfig",
                 "processor_class": "Qwen3VLProcessor", "model_type": "spatial-mllm-qwen3", "layout": "qwen3",
                 "architecture": "SpatialMLLMQwen3ForConditionalGeneration",
                 "base_repo": "Qwen/Qwen3-VL-2B-Instruct"},
}
MODEL_TYPES = {v["model_type"]: k for k, v in BASE_FAMILIES.items()}
POSE_SOURCES = ("vggt", "manifest")
SPATIAL_ENCODERS = ("vggt",)
#: the config.json key of the SpatialMLLMConfig fields without a released spelling
CONFIG_KEY = "posevlm_spatial_mllm"
_LEGACY_CONNECTOR_NAMES = {"add": "mlp_add"}
_POSE_ENC_TYPES = {"PTHW": "pthw", "PHW": "phw", "THW": "thw"}


@dataclass(frozen=True)
class SpatialMLLMConfig:
    """A Spatial-MLLM recipe: base family, spatial encoder, connector, and where cameras come from.

    Fields:
        base_family: ``qwen2_5_vl`` (released Spatial-MLLM) or ``qwen3_vl`` (the fork's Qwen3-VL variant).
        spatial_encoder: registry name of the spatial encoder (``vggt``).
        spatial_config: its architecture (:class:`~posevlm.spatial.VGGTConfig`; default VGGT-1B with the camera
            head only, what the MLLM needs).
        connector: the :class:`ConnectorConfig`, or None for a pose-only model (VGGT for cameras, no feature
            fusion: the fork's Qwen3-VL variant).
        spatial_layer: the aggregator layer the connector reads (released: -1, the last).
        pose_source: where cameras come from when no ``w2c_opencv`` is passed: ``vggt`` (the model's own camera
            head, decoded for the frames it saw) or ``manifest`` (``w2c_opencv`` required).
        positions: the :class:`~posevlm.positions.PositionSpec` installed on the Qwen model with
            :func:`posevlm.models.enable_pose_positions` (None: stock positions, untouched model).
        slot_axis: its frequency-slot -> axis map (None: the default for the spec).
        camera_attention: a :class:`~posevlm.models.camera_attention.CameraAttentionSpec` (PRoPE / GTA / CaPE /
            pose bias) or None; installs positions too (``thw`` when ``positions`` is None).
    """

    base_family: str = "qwen2_5_vl"
    spatial_encoder: str = "vggt"
    spatial_config: VGGTConfig = field(default_factory=lambda: VGGTConfig.vggt_1b(heads=("camera",)))
    connector: ConnectorConfig | None = field(default_factory=ConnectorConfig)
    spatial_layer: int = -1
    pose_source: str = "vggt"
    positions: PositionSpec | None = None
    slot_axis: tuple[int, ...] | None = None
    camera_attention: CameraAttentionSpec | None = None
    schema_version: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.spatial_config, Mapping):
            object.__setattr__(self, "spatial_config", VGGTConfig.from_dict(dict(self.spatial_config)))
        if isinstance(self.connector, Mapping):
            object.__setattr__(self, "connector", ConnectorConfig.from_dict(dict(self.connector)))
        if isinstance(self.positions, Mapping):
            object.__setattr__(self, "positions", PositionSpec.from_dict(dict(self.positions)))
        if isinstance(self.camera_attention, Mapping):
            object.__setattr__(self, "camera_attention", CameraAttentionSpec.from_dict(dict(self.camera_attention)))
        if self.slot_axis is not None:
            object.__setattr__(self, "slot_axis", tuple(int(s) for s in self.slot_axis))
        problems = []
        if self.base_family not in BASE_FAMILIES:
            problems.append(f"base_family={self.base_family!r} (allowed: {', '.join(BASE_FAMILIES)})")
        if self.spatial_encoder not in SPATIAL_ENCODERS:
            problems.append(f"spatial_encoder={self.spatial_encoder!r} (allowed: {', '.join(SPATIAL_ENCODERS)})")
        if self.pose_source not in POSE_SOURCES:
            problems.append(f"pose_source={self.pose_source!r} (allowed: {', '.join(POSE_SOURCES)})")
        depth = self.spatial_config.depth
        if isinstance(self.spatial_layer, bool) or not isinstance(self.spatial_layer, int) \
                or not -depth <= self.spatial_layer < depth:
            problems.append(f"spatial_layer={self.spatial_layer!r} (an aggregator layer in -{depth}..{depth - 1}; "
                            "-1 is the last, as released)")
        if self.connector is not None and self.connector.spatial_dim != self.spatial_config.token_dim:
            problems.append(f"connector.spatial_dim={self.connector.spatial_dim} but the spatial encoder's tokens are "
                            f"{self.spatial_config.token_dim} wide (2 x embed_dim); set spatial_dim to match")
        layout = BASE_FAMILIES.get(self.base_family, {}).get("layout")
        if self.positions is not None and layout is not None and self.positions.layout != layout:
            problems.append(f"positions.layout={self.positions.layout!r} but base_family {self.base_family} has "
                            f"layout {layout!r}")
        if self.needs_cameras and self.pose_source == "vggt" and "camera" not in self.spatial_config.heads:
            problems.append("the positions / camera attention need cameras and pose_source='vggt', but the spatial "
                            f"encoder has no camera head (spatial_config.heads={list(self.spatial_config.heads)}); "
                            "add 'camera' to the heads or use pose_source='manifest'")
        if self.extra_tokens and self.positions is not None and self.positions.pose != "none":
            problems.append(f"positions {self.positions.axes} read a pose index P, but the {self.connector.type} "
                            "connector adds extra (3D) tokens that have no camera, so P cannot apply to the 2D tokens "
                            "only; use a mode without P (thw, thw_index, thw_without_t, thw_readapt_t), optionally "
                            "with camera_attention (which applies to the 2D tokens only)")
        if self.schema_version != 1:
            problems.append(f"schema_version={self.schema_version!r} (this release reads 1)")
        if problems:
            raise ConfigError("invalid SpatialMLLMConfig: " + "; ".join(problems), field="spatial_mllm",
                              value=problems)

    # -- derived ---------------------------------------------------------------------------------------
    @property
    def model_type(self) -> str:
        """``spatial-mllm`` (Qwen2.5-VL base, as released) or ``spatial-mllm-qwen3``."""
        return BASE_FAMILIES[self.base_family]["model_type"]

    @property
    def layout(self) -> str:
        return BASE_FAMILIES[self.base_family]["layout"]

    @property
    def extra_tokens(self) -> int:
        """Extra sequence tokens per merged 2D token the connector adds (``sequence_cat``: 1, else 0)."""
        return 0 if self.connector is None else self.connector.extra_tokens_per_visual_token

    @property
    def needs_cameras(self) -> bool:
        """The positions read poses (pose index P) or camera attention is on: every prefill needs cameras."""
        pose = self.positions is not None and self.positions.pose != "none"
        return pose or self.camera_attention is not None

    @property
    def needs_intrinsics(self) -> bool:
        """Camera attention uses intrinsics (PRoPE): ``K_pixels`` + ``image_hw`` are needed as well."""
        if self.camera_attention is None or self.camera_attention.mode == "none":
            return False
        from posevlm.attention import camera_modes

        return bool(camera_modes.get(self.camera_attention.mode).intrinsics)

    @property
    def pose_enabled(self) -> bool:
        """posevlm positions are installed on the Qwen model: a spec or camera attention is set, or the connector
        adds extra tokens (transformers' ``get_rope_index`` cannot place them; posevlm's ``thw`` can)."""
        return self.positions is not None or self.camera_attention is not None or self.extra_tokens > 0

    def position_spec(self) -> PositionSpec | None:
        """The spec to install: ``positions``, or stock ``thw`` (posevlm's builder, equal to transformers'
        ``get_rope_index``) when only camera attention is set or the connector adds extra tokens."""
        if self.positions is not None or not self.pose_enabled:
            return self.positions
        return position_spec("thw", self.layout)

    # -- serialisation ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "base_family": self.base_family, "spatial_encoder": self.spatial_encoder,
            "spatial_config": self.spatial_config.to_dict(),
            "connector": None if self.connector is None else self.connector.to_dict(),
            "spatial_layer": self.spatial_layer, "pose_source": self.pose_source,
            "positions": None if self.positions is None else self.positions.to_dict(),
            "slot_axis": None if self.slot_axis is None else list(self.slot_axis),
            "camera_attention": None if self.camera_attention is None else self.camera_attention.to_dict(),
            "schema_version": self.schema_version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SpatialMLLMConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown SpatialMLLMConfig keys {unknown}; known: {sorted(known)}",
                              field="spatial_mllm", value=unknown)
        return cls(**dict(data))

    def replace(self, **changes: Any) -> "SpatialMLLMConfig":
        return replace(self, **changes)


# ---- config.json ----------------------------------------------------------------------------------------------
_DROP_FROM_BASE = ("model_type", "architectures", "auto_map", "transformers_version", "spatial_config",
                   "connector_config", "pose_rope_config", CONFIG_KEY, "posevlm_positions")


def hf_config_dict(config: SpatialMLLMConfig, qwen_config) -> dict[str, Any]:
    """The ``config.json`` dict of a Spatial-MLLM: ``qwen_config`` (a transformers Qwen2.5-VL / Qwen3-VL config)
    in the released layout plus ``spatial_config``, ``connector_config`` and ``posevlm_spatial_mllm``."""
    base = qwen_config.to_dict()
    base.pop("posevlm_positions", None)  # positions live in posevlm_spatial_mllm (one source of truth)
    out: dict[str, Any] = {}
    if config.base_family == "qwen2_5_vl" and isinstance(base.get("text_config"), dict):
        # the released (transformers 4.51) layout: text fields at the top level, rope as rope_scaling/rope_theta
        text = {k: v for k, v in base["text_config"].items() if k not in ("model_type", "architectures", "dtype")}
        rope = dict(text.pop("rope_parameters", None) or {})
        if rope:
            out["rope_theta"] = rope.get("rope_theta")
            out["rope_scaling"] = {"type": "mrope", "mrope_section": list(rope.get("mrope_section") or [])}
        out.update(text)
    out.update({k: v for k, v in base.items() if k not in ("model_type", "architectures", "transformers_version")})
    out["model_type"] = config.model_type
    out["architectures"] = [BASE_FAMILIES[config.base_family]["architecture"]]
    out["spatial_config"] = config.spatial_config.to_dict()
    connector = None
    if config.connector is not None:
        connector = {"connector_type": _LEGACY_CONNECTOR_NAMES.get(config.connector.type, config.connector.type),
                     "spatial_embeds_layer_idx": config.spatial_layer, **config.connector.to_dict()}
    out["connector_config"] = connector
    out[CONFIG_KEY] = config.to_dict()
    return out


def positions_from_pose_rope_config(pose_rope: Mapping[str, Any], base_family: str, *,
                                    tokens_per_second: float | None = None,
                                    ) -> tuple[PositionSpec | None, tuple[int, ...] | None]:
    """The (PositionSpec, slot_axis) of a fork checkpoint's ``pose_rope_config``.

    ``use_pose_rope`` false -> (None, None): stock positions. ``pose_enc_type`` ``PTHW`` / ``PHW`` / ``THW`` -> the
    modes ``pthw`` / ``phw`` / ``thw``; on Qwen2.5-VL with the fork's next-segment rule (``legacy``: the fork ran
    transformers 4.x). ``mrope_section`` -> a chunked slot map (Qwen2.5-VL); Qwen3-VL keeps its interleaved
    sections (the fork refuses custom ones), so a section list there must be the default.
    """
    if not pose_rope or not pose_rope.get("use_pose_rope", False):
        return None, None
    kind = str(pose_rope.get("pose_enc_type", "PTHW")).upper()
    if kind not in _POSE_ENC_TYPES:
        raise ConfigError(f"pose_rope_config.pose_enc_type={kind!r}; known: {', '.join(_POSE_ENC_TYPES)}",
                          field="pose_rope_config", value=kind)
    layout = BASE_FAMILIES[base_family]["layout"]
    extra = {"tokens_per_second": float(tokens_per_second)} if tokens_per_second is not None else {}
    legacy = layout == "qwen2_5"
    spec = position_spec(_POSE_ENC_TYPES[kind], layout, legacy=legacy, **extra)
    sections = pose_rope.get("mrope_section")
    slot_axis = None
    if sections and layout == "qwen2_5":
        sections = [int(s) for s in sections]
        if len(sections) != len(spec.axes):
            raise ConfigError(f"pose_rope_config.mrope_section={sections} has {len(sections)} sections but "
                              f"{kind} has {len(spec.axes)} axes {spec.axes}", field="pose_rope_config",
                              value=sections)
        slot_axis = tuple(chunked_slot_axis(sections).tolist())
    return spec, slot_axis


def _spatial_config(data: Mapping[str, Any] | None, stored: Mapping[str, Any] | None) -> VGGTConfig:
    """The VGGTConfig of a checkpoint: posevlm's full dict, else the released sub-config (``img_size``,
    ``patch_size``, ``embed_dim``) over VGGT-1B with the camera head only."""
    if stored is not None:
        return VGGTConfig.from_dict(dict(stored))
    known = {f.name for f in fields(VGGTConfig)}
    given = {k: v for k, v in dict(data or {}).items() if k in known}
    given.setdefault("heads", ("camera",))
    return VGGTConfig.vggt_1b(**given)


def read_hf_config(data: Mapping[str, Any], *, source: str = "config.json"):
    """Parse a Spatial-MLLM ``config.json`` dict.

    Returns:
        (SpatialMLLMConfig, the base transformers config, ``pose_rope_config`` dict or None).
    Raises:
        ConfigError: not a Spatial-MLLM config (names the model types this reads), or invalid blocks.
    """
    import transformers

    data = dict(data)
    model_type = data.get("model_type")
    stored = data.get(CONFIG_KEY)
    if model_type not in MODEL_TYPES:
        raise ConfigError(f"{source}: model_type {model_type!r} is not a Spatial-MLLM checkpoint (reads "
                          f"{', '.join(MODEL_TYPES)}); a plain Qwen checkpoint is a base: use "
                          "SpatialMLLM.compose(qwen=..., vggt=...)", field="model_type", value=model_type)
    base_family = MODEL_TYPES[model_type]
    info = BASE_FAMILIES[base_family]
    base = {k: v for k, v in data.items() if k not in _DROP_FROM_BASE}
    if isinstance(base.get("text_config"), dict):  # both layouts written: the nested one wins
        base = {k: v for k, v in base.items() if k == "text_config" or k not in base["text_config"]
                and k not in ("rope_scaling", "rope_theta")}
    qwen_config = getattr(transformers, info["config_class"])(**base)
    text = getattr(qwen_config, "text_config", qwen_config)
    stored_fields = dict(stored or {})
    spatial = _spatial_config(data.get("spatial_config"), stored_fields.pop("spatial_config", None))
    connector_data = data.get("connector_config", stored_fields.get("connector"))
    stored_fields.pop("connector", None)
    layer = -1
    connector = None
    if connector_data is not None:
        connector_data = dict(connector_data)
        layer = int(connector_data.get("spatial_embeds_layer_idx", stored_fields.get("spatial_layer", -1)))
        connector_data.setdefault("spatial_dim", spatial.token_dim)
        connector_data.setdefault("llm_dim", int(text.hidden_size))
        known = {f.name for f in fields(ConnectorConfig)} | {"connector_type", "spatial_embeds_layer_idx"}
        connector = ConnectorConfig.from_dict({k: v for k, v in connector_data.items() if k in known})
    stored_fields["spatial_layer"] = stored_fields.get("spatial_layer", layer)
    pose_rope = data.get("pose_rope_config")
    if pose_rope and stored is None:
        tps = getattr(getattr(qwen_config, "vision_config", None), "tokens_per_second", None)
        positions, slot_axis = positions_from_pose_rope_config(pose_rope, base_family, tokens_per_second=tps)
        stored_fields.setdefault("positions", None if positions is None else positions.to_dict())
        stored_fields.setdefault("slot_axis", None if slot_axis is None else list(slot_axis))
    stored_fields.pop("base_family", None)
    config = SpatialMLLMConfig(base_family=base_family, spatial_config=spatial, connector=connector,
                               **stored_fields)
    return config, qwen_config, (dict(pose_rope) if pose_rope else None)


def warn_if_overridden(config: SpatialMLLMConfig, *, positions=None, camera_attention=None, source: str) -> None:
    """Warn when an explicit position / camera-attention request differs from what the checkpoint stores."""
    if positions is not None and config.positions is not None and positions != config.positions:
        warnings.warn(f"{source} was trained with positions {config.positions.to_dict()} but "
                      f"{positions.to_dict()} was requested; using the request", stacklevel=3)
    if camera_attention is not None and config.camera_attention is not None \
            and camera_attention != config.camera_attention:
        warnings.warn(f"{source} stores camera attention {config.camera_attention.to_dict()} but "
                      f"{camera_attention.to_dict()} was requested; using the request", stacklevel=3)
