"""Answering backends. ``oracle``: perfect perception of the given frames (depth + instance masks),
the upper bound a frame selection allows; needs synthetic scenes (or any scene with depth, instance
masks, cameras and an instance-to-category list in ``metadata.objects``)."""

from posevlm.eval.backends.oracle import (
    FALLBACK_LETTER,
    FALLBACK_NUMBER,
    OracleConfig,
    answer_oracle,
    answer_oracle_many,
    closest_distance,
    floor_area_from_points,
    points_extent_cm,
)

__all__ = [
    "FALLBACK_LETTER", "FALLBACK_NUMBER", "OracleConfig", "answer_oracle", "answer_oracle_many", "closest_distance",
    "floor_area_from_points", "points_extent_cm",
]  # fmt: skip
