"""Boundary validation shared by the geometry functions."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from posevlm.errors import ShapeError


def as_float_tensor(x: Tensor | np.ndarray | Sequence, name: str) -> Tensor:
    """Return ``x`` as a floating tensor; integers and numpy arrays become float64 (float64-safe)."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(np.asarray(x))
    if not x.is_floating_point():
        x = x.to(torch.float64)
    return x


def check_trailing(x: Tensor, name: str, trailing: tuple[int, ...], hint: str = "") -> Tensor:
    """Raise ``ShapeError`` unless ``x.shape`` ends with ``trailing``."""
    n = len(trailing)
    if x.dim() < n or tuple(x.shape[-n:]) != trailing:
        dims = ", ".join(map(str, trailing))
        msg = f"{name} must have shape (..., {dims}); got {tuple(x.shape)}."
        if hint:
            msg += f" {hint}"
        raise ShapeError(msg, name=name, shape=tuple(x.shape))
    return x


def se3_arg(x: Tensor | np.ndarray, name: str) -> Tensor:
    """Validate a (..., 4, 4) rigid transform argument, accepting (..., 3, 4) by padding."""
    x = as_float_tensor(x, name)
    if x.dim() >= 2 and tuple(x.shape[-2:]) == (3, 4):
        bottom = torch.zeros(*x.shape[:-2], 1, 4, dtype=x.dtype, device=x.device)
        bottom[..., 0, 3] = 1
        x = torch.cat([x, bottom], dim=-2)
    return check_trailing(x, name, (4, 4), "Pad a (..., 3, 4) matrix with [0, 0, 0, 1] or use se3_from_Rt().")


def broadcast_batch(*shapes: Sequence[int], names: Sequence[str] = ()) -> tuple[int, ...]:
    """The broadcast of leading batch shapes (numpy's rule). ``torch.broadcast_shapes`` would do, but its first
    call imports torch.fx and sympy (~0.5 s per process); this stays cheap.

    Raises:
        ShapeError: the shapes do not broadcast (names the arguments when ``names`` is given).
    """
    try:
        return tuple(np.broadcast_shapes(*(tuple(int(d) for d in s) for s in shapes)))
    except ValueError:
        what = ", ".join(f"{n} {tuple(s)}" for n, s in zip(names, shapes)) or ", ".join(str(tuple(s)) for s in shapes)
        raise ShapeError(f"batch shapes do not broadcast: {what}") from None
