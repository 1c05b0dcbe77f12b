"""Uniform selection: ``k`` evenly spaced positions out of ``num_candidates``.

Three named flavours are built from :func:`select_uniform` by the runner (``SamplingConfig``
``params={"flavour": ...}``); they differ in the candidate list and the rounding:

===============  ===========================================  ==========  =====================================
flavour          candidates                                   rounding    what it reproduces
===============  ===========================================  ==========  =====================================
``round_full``   every video frame (n = T_video)              ``round``   qwen-vl-utils / torch ``.round()``
``floor_full``   every video frame (n = T_video)              ``floor``   ``np.linspace(..., dtype=int)``
``floor_pool``   the 128-frame pool ``floor(linspace(0,       ``floor``   the research code's ``uniform``
                 T_video-1, 128))``; pool positions picked                (uniform over the pool, not the
                                                                          video; up to ~T_video/128 off)
===============  ===========================================  ==========  =====================================

Golden vectors (1000-frame video, k = 8): ``round_full`` -> frames [0, 143, 285, 428, 571, 714, 856,
999]; ``floor_pool`` -> pool positions [0, 18, 36, 54, 72, 90, 108, 127] -> frames [0, 141, 283, 424,
566, 707, 849, 999]::

    pool = np.floor(np.linspace(0, 999, 128)).astype(np.int64)        # frame ids of the pool
    pool[select_uniform(pool.size, 8, rounding="floor").pool_indices]   # floor_pool frame ids
"""

from __future__ import annotations

import operator
from typing import Literal

import numpy as np

from posevlm.errors import ConfigError
from posevlm.sampling.selection import SamplerSpec, Selection

__all__ = ["Rounding", "select_uniform"]

Rounding = Literal["round", "floor"]


def _count(value: object, name: str, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (bools and floats rejected), else ``ConfigError``."""
    if isinstance(value, bool):
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r}", field=name, value=value)
    try:
        out = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ConfigError(f"{name} must be an int >= {minimum}; got {value!r} ({type(value).__name__})",
                          field=name, value=value) from None
    if out < minimum:
        raise ConfigError(f"{name} must be >= {minimum}; got {out}", field=name, value=value)
    return int(out)


def select_uniform(num_candidates: int, k: int, *, rounding: Rounding = "round") -> Selection:
    """``k`` evenly spaced pool indices: ``linspace(0, n - 1, k)`` rounded or floored.

    Args:
        num_candidates: n, the number of candidates (pool size or video length), >= 1.
        k: how many to pick, >= 1. ``k >= n`` returns all n indices.
        rounding: ``"round"`` = qwen-vl-utils' reader indices ``torch.linspace(0, n - 1, k).round()``:
            torch's float32 linspace, rounded half to even (a float64 linspace picks other frames on long
            videos, e.g. 36,895 instead of 36,896 for 236 of 46,367); ``"floor"`` = truncation of a float64
            linspace, the research code's ``astype(int)`` / ``linspace(..., dtype=int)``. For ``k < n`` the
            linspace step is > 1, so both give k distinct, ascending indices.
    Returns:
        ``Selection`` with ``pool_indices == selection_order`` (ascending) and
        ``stats = {"rounding": rounding}``.
    Raises:
        ConfigError: n < 1, k < 1, non-integer n or k, or an unknown ``rounding``.
    """
    n = _count(num_candidates, "num_candidates", 1)
    k = _count(k, "k", 1)
    if rounding not in ("round", "floor"):
        raise ConfigError(f"rounding must be 'round' or 'floor'; got {rounding!r}", field="rounding",
                          value=rounding)
    if k >= n:
        idx = np.arange(n, dtype=np.int64)
    elif rounding == "round":
        import torch  # qwen-vl-utils' own arithmetic (float32 linspace); imported on first use

        idx = torch.linspace(0, n - 1, k, dtype=torch.float32).round().long().numpy()
    else:
        idx = np.floor(np.linspace(0, n - 1, k)).astype(np.int64)
    return Selection(idx, idx.copy(), {"rounding": rounding})


#: uniform flavour -> (the pool is every frame of the scan, rounding)
UNIFORM_FLAVOURS: dict[str, tuple[bool, Rounding]] = {
    "round_full": (True, "round"), "floor_full": (True, "floor"), "floor_pool": (False, "floor"),
}


def _select(pool, k: int, *, seed: int, flavour: str) -> Selection:
    return select_uniform(pool.frame_ids.size, k, rounding=UNIFORM_FLAVOURS[flavour][1])


def _check(params) -> list[str]:
    flavour = params["flavour"]
    return [] if flavour in UNIFORM_FLAVOURS else \
        [f"uniform flavour must be one of {', '.join(UNIFORM_FLAVOURS)}; got {flavour!r}"]


SAMPLER = SamplerSpec(
    "uniform", _select, {"flavour": "round_full"}, needs=(),
    description="evenly spaced frames: round_full (qwen-vl-utils on the mp4), floor_full, floor_pool (the "
                "reference's folders)",
    check=_check, uses_all_frames=lambda params: UNIFORM_FLAVOURS.get(params["flavour"], (False,))[0],
)
