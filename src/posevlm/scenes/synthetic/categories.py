"""The object category table of the synthetic scene generator: names, realistic sizes, colours.

Sizes are full extents in metres as ``(length, width, height)``. For ``against_wall`` categories the
length runs along the wall and the width is the depth away from it (a toilet is narrow along the wall
and deep; a sofa is long along it). Free-standing objects get a random quarter-turn yaw, which in the
axis-aligned world of :mod:`posevlm.scenes.synthetic.layout` is a swap of the x and y extents.
"""

from __future__ import annotations

from dataclasses import dataclass

from posevlm.errors import ConfigError

__all__ = ["Category", "CATEGORIES", "CATEGORY_NAMES", "STANDARD_CATEGORY_NAMES", "CLUTTER_CATEGORY_NAMES"]


@dataclass(frozen=True)
class Category:
    """One indoor object category.

    Attributes:
        name: category name as written in questions and ``scene.json`` (snake_case, singular).
        size_min_m: smallest (length, width, height), metres.
        size_max_m: largest (length, width, height), metres; each entry >= its ``size_min_m``.
        color_rgb: base colour (0-255); instances vary it slightly.
        against_wall: placed with its back against a wall (length along the wall), else free-standing.
    """

    name: str
    size_min_m: tuple[float, float, float]
    size_max_m: tuple[float, float, float]
    color_rgb: tuple[int, int, int]
    against_wall: bool

    def __post_init__(self) -> None:
        if len(self.size_min_m) != 3 or len(self.size_max_m) != 3:
            raise ConfigError(
                f"Category {self.name!r}: size_min_m and size_max_m must be (length, width, height); "
                f"got {self.size_min_m} and {self.size_max_m}.",
                field="size_min_m",
                value=(self.size_min_m, self.size_max_m),
            )
        if any(lo <= 0 or hi < lo for lo, hi in zip(self.size_min_m, self.size_max_m)):
            raise ConfigError(
                f"Category {self.name!r}: need 0 < size_min_m <= size_max_m per axis; "
                f"got {self.size_min_m} and {self.size_max_m}.",
                field="size_max_m",
                value=(self.size_min_m, self.size_max_m),
            )
        if len(self.color_rgb) != 3 or any(not 0 <= c <= 255 for c in self.color_rgb):
            raise ConfigError(
                f"Category {self.name!r}: color_rgb must be three ints in [0, 255]; got {self.color_rgb}.",
                field="color_rgb",
                value=self.color_rgb,
            )


def _c(name, size_min_m, size_max_m, color_rgb, against_wall) -> tuple[str, Category]:
    return name, Category(name, size_min_m, size_max_m, color_rgb, against_wall)


#: name -> Category: 14 common indoor categories, then 9 small clutter ones (ScanNet / VSI-Bench vocabulary).
CATEGORIES: dict[str, Category] = dict(
    [
        _c("chair", (0.42, 0.42, 0.78), (0.60, 0.60, 1.05), (178, 96, 52), False),
        _c("table", (0.80, 0.70, 0.70), (1.80, 1.00, 0.78), (140, 98, 60), False),
        _c("sofa", (1.60, 0.80, 0.75), (2.40, 1.00, 0.95), (70, 92, 150), True),
        _c("bed", (1.90, 0.90, 0.45), (2.20, 1.80, 0.65), (205, 200, 185), True),
        _c("tv", (0.90, 0.30, 1.00), (1.60, 0.45, 1.50), (35, 35, 40), True),  # screen on a stand
        _c("lamp", (0.25, 0.25, 1.40), (0.45, 0.45, 1.80), (235, 210, 120), False),  # floor lamp
        _c("cabinet", (0.60, 0.35, 0.80), (1.20, 0.60, 2.00), (160, 150, 135), True),
        _c("plant", (0.30, 0.30, 0.50), (0.60, 0.60, 1.50), (60, 140, 60), False),  # potted plant
        _c("desk", (1.00, 0.55, 0.72), (1.60, 0.80, 0.78), (120, 85, 55), True),
        _c("stool", (0.30, 0.30, 0.45), (0.45, 0.45, 0.75), (200, 160, 90), False),
        _c("bookshelf", (0.60, 0.25, 1.20), (1.20, 0.40, 2.10), (110, 70, 45), True),
        _c("trash_can", (0.25, 0.25, 0.35), (0.40, 0.40, 0.70), (90, 95, 100), False),
        _c("refrigerator", (0.60, 0.60, 1.50), (0.90, 0.80, 1.90), (225, 228, 232), True),
        _c("toilet", (0.36, 0.60, 0.70), (0.45, 0.75, 0.85), (245, 245, 245), True),
        # clutter: small floor-standing things of the VSI-Bench / ScanNet vocabulary (``clutter=True`` layouts)
        _c("backpack", (0.28, 0.18, 0.38), (0.40, 0.28, 0.55), (40, 110, 160), False),
        _c("box", (0.25, 0.20, 0.15), (0.60, 0.45, 0.50), (190, 150, 95), False),
        _c("basket", (0.25, 0.25, 0.20), (0.45, 0.45, 0.40), (175, 130, 70), False),
        _c("suitcase", (0.40, 0.22, 0.55), (0.55, 0.30, 0.75), (150, 40, 45), False),
        _c("fan", (0.30, 0.30, 0.80), (0.40, 0.40, 1.20), (215, 220, 225), False),  # standing fan
        _c("speaker", (0.18, 0.18, 0.30), (0.30, 0.30, 1.00), (25, 25, 30), False),
        _c("vase", (0.18, 0.18, 0.35), (0.30, 0.30, 0.80), (80, 150, 170), False),  # floor vase
        _c("nightstand", (0.40, 0.35, 0.45), (0.55, 0.45, 0.65), (150, 105, 70), True),
        _c("ottoman", (0.40, 0.40, 0.35), (0.65, 0.65, 0.45), (120, 80, 130), False),
    ]
)

#: Category names in table order (the order used when sampling by index).
CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)
#: The 14 categories of standard layouts (table order; sampling draws from exactly these, so standard
#: scenes are unchanged by the clutter additions).
STANDARD_CATEGORY_NAMES: tuple[str, ...] = CATEGORY_NAMES[:14]
#: Small categories added by ``clutter=True`` layouts (which draw from every category).
CLUTTER_CATEGORY_NAMES: tuple[str, ...] = CATEGORY_NAMES[14:]
