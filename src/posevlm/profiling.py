"""Measuring what a torch computation keeps alive (benchmarks and memory tests, no timing)."""

from __future__ import annotations

import weakref

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["LiveTensorBytes"]


class LiveTensorBytes(TorchDispatchMode):
    """Bytes of tensor storages created by torch ops while active and still alive; ``peak`` is the maximum.
    Storages of tensors made outside (parameters, inputs) are not counted; views share their base's count."""

    def __init__(self):
        super().__init__()
        self.sizes: dict[int, int] = {}
        self.refs: dict[int, int] = {}
        self.current = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in pytree.tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            key = t.untyped_storage().data_ptr()
            if key not in self.sizes:
                if key in inputs or key == 0:
                    continue
                self.sizes[key], self.refs[key] = t.untyped_storage().nbytes(), 0
                self.current += self.sizes[key]
                self.peak = max(self.peak, self.current)
            self.refs[key] += 1
            weakref.finalize(t, self._release, key)
        return out

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.current -= self.sizes.pop(key)
            del self.refs[key]
