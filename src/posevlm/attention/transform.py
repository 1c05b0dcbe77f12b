"""Per-token camera transforms applied around an unmodified attention kernel (PRoPE / GTA / CaPE).

Shape notation: B batch, C cameras, L tokens, H heads (query or KV heads), D head dim, G = number of
4-dim groups carrying the camera block. Attention tensors are (B, H, L, D) (transformers layout).

Semantics (positions.md §3.1): with P̃_i the camera matrix of token i (identity for text tokens),
every 4-vector x of a camera group is replaced by

    q: P̃_iᵀ x      k, v: P̃_j⁻¹ x      o: P̃_i x

so logits are q_iᵀ P̃_i P̃_j⁻¹ k_j and outputs return to the query's frame. CaPE transforms q and k only.
Matrices are built once per forward in float32 (float64 if the cameras are float64) and cast to the
attention tensor's dtype at apply time; the matmul runs in that dtype.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from posevlm.attention.cameras import CameraMode, affine_inverse, check_mode
from posevlm.errors import ConfigError, ShapeError

__all__ = [
    "CameraDims",
    "CameraTransform",
    "build_camera_transform",
    "camera_sdpa",
    "naive_camera_sdpa",
    "rope2d",
]


@dataclass(frozen=True)
class CameraDims:
    """Head-dim indices carrying the camera block, grouped in consecutive 4s in the stored order.

    ``index``: tuple of unique non-negative ints, length a multiple of 4. ``head_dim`` (optional) is checked
    against ``index`` here and against the attention tensors at apply time.
    """

    index: tuple[int, ...]
    head_dim: int | None = None

    def __post_init__(self):
        idx = tuple(int(i) for i in self.index)
        object.__setattr__(self, "index", idx)
        problems = []
        if len(idx) == 0 or len(idx) % 4:
            problems.append(f"needs a positive multiple of 4 dims; got {len(idx)}")
        if len(set(idx)) != len(idx):
            problems.append("dims must be unique")
        if any(i < 0 for i in idx):
            problems.append("dims must be non-negative")
        if self.head_dim is not None and any(i >= self.head_dim for i in idx):
            problems.append(f"all dims must be < head_dim={self.head_dim}; max is {max(idx)}")
        if problems:
            raise ConfigError("CameraDims: " + "; ".join(problems), field="dims", value=idx)
        object.__setattr__(self, "_max", max(idx))
        object.__setattr__(self, "_runs", _runs(idx))

    @classmethod
    def from_range(cls, start: int, stop: int, head_dim: int | None = None) -> CameraDims:
        """Dims [start, stop) as (stop - start) / 4 consecutive groups."""
        return cls(tuple(range(start, stop)), head_dim)

    @classmethod
    def from_rotary_slots(cls, slots: Sequence[int], head_dim: int) -> CameraDims:
        """Dims of rotary frequency slots (rotate-half layout: slot k owns dims k and k + head_dim/2).

        Order: all chosen slots' first-half dims, then their second-half dims; then grouped by 4.
        Qwen2.5's T slots 0..15 with head_dim 128 give dims [0, 16) ∪ [64, 80).
        """
        if head_dim % 2:
            raise ConfigError(f"head_dim must be even; got {head_dim}", field="head_dim", value=head_dim)
        half = head_dim // 2
        slots = [int(s) for s in slots]
        bad = [s for s in slots if not 0 <= s < half]
        if bad:
            raise ConfigError(f"rotary slots must be in [0, {half}); got {bad}", field="slots", value=bad)
        return cls(tuple(slots) + tuple(s + half for s in slots), head_dim)

    @property
    def num_groups(self) -> int:
        return len(self.index) // 4

    @property
    def is_contiguous(self) -> bool:
        return self.index == tuple(range(self.index[0], self.index[0] + len(self.index)))

    @property
    def runs(self) -> tuple[tuple[int, int], ...] | None:
        """Sorted contiguous [start, stop) runs covering the dims when every group is 4 consecutive dims
        (e.g. ``from_range``, ``from_rotary_slots(range(16), 128)``); None otherwise (gather path)."""
        return self._runs

    def check(self, head_dim: int) -> None:
        if self._max >= head_dim or (self.head_dim is not None and self.head_dim != head_dim):
            raise ShapeError(
                f"camera dims {self.index[0]}..{max(self.index)} (head_dim={self.head_dim}) do not fit tensors "
                f"with head dim {head_dim}", name="head_dim", shape=(head_dim,))


#: Up to this many (head, token) rows (decode steps) a broadcast matmul beats einsum's permute + bmm, and a
#: single gather beats per-run slicing when the dims form several runs.
_SMALL_ROWS = 256


def _runs(idx: tuple[int, ...]) -> tuple[tuple[int, int], ...] | None:
    groups = [idx[i : i + 4] for i in range(0, len(idx), 4)]
    if any(g != tuple(range(g[0], g[0] + 4)) for g in groups):
        return None
    runs: list[list[int]] = []
    for start in sorted(g[0] for g in groups):
        if runs and runs[-1][1] == start:
            runs[-1][1] = start + 4
        else:
            runs.append([start, start + 4])
    return tuple((a, b) for a, b in runs)


def _group_matmul(cam: Tensor, mat: Tensor, small: bool) -> Tensor:
    """cam (B, H, L, n), mat (B, L, 4, 4) in cam's dtype -> each 4-vector g of token l replaced by mat[b, l] @ g."""
    groups = cam.unflatten(-1, (cam.shape[-1] // 4, 4))  # (B, H, L, G, 4)
    if small:
        return torch.matmul(groups, mat.mT[:, None]).flatten(-2)
    # one bmm over (B*L) tokens of (H*G, 4) @ (4, 4): far fewer, larger products than per (b, h, l)
    return torch.einsum("blij,bhlgj->bhlgi", mat, groups).flatten(-2)


def _check_x(x: Tensor, mat: Tensor, dims: CameraDims) -> None:
    if x.dim() != 4:
        raise ShapeError(f"attention tensors must be (B, H, L, D); got {tuple(x.shape)}", name="x",
                         shape=tuple(x.shape))
    b, _, length, d = x.shape
    if mat.shape[0] not in (1, b) or mat.shape[1] != length:
        raise ShapeError(f"tensor (B={b}, L={length}) does not match the transform's (B, L) = "
                         f"{tuple(mat.shape[:2])}; use transform.tokens(...) for a decode step",
                         name="x", shape=tuple(x.shape))
    dims.check(d)


def _apply(x: Tensor, mat: Tensor, dims: CameraDims, dim_index: Tensor, inplace: bool = False) -> Tensor:
    """x (B, H, L, D), mat (B, L, 4, 4): replace each camera 4-vector g of token l by mat[b, l] @ g.

    One copy of x (``clone``, strides preserved; skipped with ``inplace``, which writes into x: only the
    camera dims are read and written); the camera dims are then overwritten from views when every group is
    4 consecutive dims (every group gets the same matrix, so groups can be processed as sorted contiguous
    runs), else (or for small inputs with several runs) by index_select / index_copy_.
    """
    _check_x(x, mat, dims)
    m = mat if mat.dtype == x.dtype else mat.to(x.dtype)
    small = x.shape[1] * x.shape[2] <= _SMALL_ROWS
    out = x if inplace else x.clone()
    # in place with differentiable matrices (cameras that need gradients): their gradient needs the input dims,
    # which the write would overwrite; multiply a copy of the camera dims instead
    saved = inplace and torch.is_grad_enabled() and m.requires_grad
    runs = dims.runs
    if runs is not None and (len(runs) == 1 or not small):
        for start, stop in runs:
            cam = x[..., start:stop]
            out[..., start:stop] = _group_matmul(cam.clone() if saved else cam, m, small)
    else:
        out.index_copy_(-1, dim_index, _group_matmul(x.index_select(-1, dim_index), m, small))
    return out


#: Up to this many (batch x token) rows a transform multiplies by full (D, D) per-token matrices (built once
#: per transform and dtype, then one matmul per apply): the decode-step path, shared by all layers.
_FULL_MATRIX_TOKENS = 8


@functools.lru_cache(maxsize=64)
def _full_layout(index: tuple[int, ...], head_dim: int, dtype: torch.dtype, device: torch.device):
    """Cached (flattened identity (1, D*D), positions (G*16,) of M[r, c] inside Mᵀ for every group)."""
    groups = torch.tensor(index, dtype=torch.long, device=device).view(-1, 4)  # (G, 4)
    rows = groups[:, :, None].expand(-1, 4, 4)  # row r of M -> column r of Mᵀ
    cols = groups[:, None, :].expand(-1, 4, 4)
    flat_t = (cols * head_dim + rows).reshape(-1)
    return torch.eye(head_dim, dtype=dtype, device=device).reshape(1, -1), flat_t


def _full_matrices(mats: Tensor, dims: CameraDims, head_dim: int, dtype: torch.dtype) -> Tensor:
    """(..., 4, 4) -> (..., D, D) transposed per-token matrices (row-vector form): the identity with each
    ``mats[...]ᵀ`` written on every camera group. One ``index_copy_`` into a cloned identity."""
    lead = mats.shape[:-2]
    n = math.prod(lead)
    eye, flat_t = _full_layout(dims.index, head_dim, dtype, mats.device)
    full = eye.expand(n, -1).clone()
    full.index_copy_(1, flat_t, mats.to(dtype).reshape(n, 16).repeat(1, dims.num_groups))
    return full.view(*lead, head_dim, head_dim)


@dataclass(frozen=True)
class CameraTransform:
    """Per-token camera matrices, built once per forward by :func:`build_camera_transform`.

    Fields:
        mode: ``"prope"``, ``"gta"`` or ``"cape"``.
        dims: the head dims carrying the camera block.
        mat_q: (B, L, 4, 4) P̃ᵀ applied to queries.
        mat_kv: (B, L, 4, 4) P̃⁻¹ applied to keys (and values, except for cape).
        mat_o: (B, L, 4, 4) P̃ applied to attention outputs; None for modes that leave values and outputs
            alone (cape).
        dim_index: (N,) int64 index of ``dims`` on the matrices' device (made from ``dims`` if None).
    """

    mode: str
    dims: CameraDims
    mat_q: Tensor
    mat_kv: Tensor
    mat_o: Tensor | None
    dim_index: Tensor | None = None
    _full_cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.dim_index is None:
            object.__setattr__(self, "dim_index", torch.tensor(self.dims.index, dtype=torch.long,
                                                                device=self.mat_q.device))

    @property
    def num_tokens(self) -> int:
        return self.mat_q.shape[1]

    @property
    def transforms_values(self) -> bool:
        return self.mat_o is not None

    def tokens(self, token_index: slice | Tensor) -> CameraTransform:
        """The rows of tokens ``token_index`` (slice or (L',) int64), e.g. a decode step's new tokens."""
        if isinstance(token_index, slice):
            pick = lambda m: None if m is None else m[:, token_index]  # noqa: E731
        else:
            pick = lambda m: None if m is None else m.index_select(1, token_index)  # noqa: E731
        return replace(self, mat_q=pick(self.mat_q), mat_kv=pick(self.mat_kv), mat_o=pick(self.mat_o))

    def _run(self, name: str, x: Tensor, mat: Tensor, inplace: bool = False) -> Tensor:
        if mat.shape[0] * mat.shape[1] > _FULL_MATRIX_TOKENS or x.dim() != 4:
            return _apply(x, mat, self.dims, self.dim_index, inplace)
        _check_x(x, mat, self.dims)
        key = (x.shape[-1], x.dtype)
        full_t = self._full_cache.get(key)
        if full_t is None:  # q, kv and o built together once per transform (a decode step), reused by all layers
            mats = torch.stack([self.mat_q, self.mat_kv, self.mat_kv if self.mat_o is None else self.mat_o])
            full_t = self._full_cache[key] = dict(zip(("q", "kv", "o"), _full_matrices(
                mats, self.dims, x.shape[-1], x.dtype).unbind(0)))
        # batched over (B, L): (H, D) @ (D, D); exact on the identity part for finite inputs
        return torch.matmul(x.transpose(1, 2), full_t[name]).transpose(1, 2)

    def apply_q(self, q: Tensor, *, inplace: bool = False) -> Tensor:
        """(B, H, L, D) queries -> P̃ᵀ q on the camera dims. ``inplace``: write into q (a temporary the caller
        owns; prefill path only, decode steps always return a new tensor)."""
        return self._run("q", q, self.mat_q, inplace)

    def apply_kv(self, x: Tensor, *, inplace: bool = False) -> Tensor:
        """(B, H, L, D) keys or values -> P̃⁻¹ x on the camera dims (for cape use apply_k / apply_v)."""
        return self._run("kv", x, self.mat_kv, inplace)

    def apply_k(self, k: Tensor, *, inplace: bool = False) -> Tensor:
        return self.apply_kv(k, inplace=inplace)

    def apply_v(self, v: Tensor, *, inplace: bool = False) -> Tensor:
        """Values: P̃⁻¹ v for prope/gta; unchanged for cape."""
        return self.apply_kv(v, inplace=inplace) if self.transforms_values else v

    def apply_o(self, o: Tensor, *, inplace: bool = False) -> Tensor:
        """(B, H, L, D) attention outputs -> P̃ o on the camera dims; unchanged for cape. Do not use
        ``inplace`` when autograd needs the attention output (SDPA saves it for its backward)."""
        if self.mat_o is None:
            return o
        return self._run("o", o, self.mat_o, inplace)


def build_camera_transform(
    cameras: Tensor,
    camera_index: Tensor,
    dims: CameraDims,
    mode: CameraMode,
    *,
    validate: bool = True,
) -> CameraTransform:
    """Gather per-token matrices from per-camera ones (once per forward).

    Args:
        cameras: (B, C, 4, 4) affine P̃ from :func:`attention_cameras` (B may be 1 to broadcast).
        camera_index: (B, L) int64 camera of each token, -1 = no camera (text: identity).
        dims: head dims carrying the camera block.
        mode: ``"prope"``, ``"gta"`` or ``"cape"`` (must match how ``cameras`` were made).
        validate: check the index range and the affine bottom row (one host sync); pass False inside
            a compiled/graph-captured forward once inputs are known to be valid.
    Returns:
        CameraTransform with float32 matrices (float64 if ``cameras`` is float64).
    """
    mode_spec = check_mode(mode)
    if not isinstance(dims, CameraDims):
        raise ConfigError(f"dims must be a CameraDims; got {type(dims).__name__}", field="dims")
    if cameras.dim() != 4 or tuple(cameras.shape[-2:]) != (4, 4):
        raise ShapeError(f"cameras must be (B, C, 4, 4); got {tuple(cameras.shape)}", name="cameras",
                         shape=tuple(cameras.shape))
    if camera_index.dim() != 2 or camera_index.dtype != torch.long:
        raise ShapeError(f"camera_index must be (B, L) int64; got {tuple(camera_index.shape)} {camera_index.dtype}",
                         name="camera_index", shape=tuple(camera_index.shape))
    b_cam, c = cameras.shape[:2]
    b = camera_index.shape[0]
    if b_cam not in (1, b):
        raise ShapeError(f"cameras batch {b_cam} does not match camera_index batch {b}", name="cameras",
                         shape=tuple(cameras.shape))
    dtype = torch.float64 if cameras.dtype == torch.float64 else torch.float32
    p = cameras.to(dtype)
    if validate:
        lo, hi = (int(camera_index.min()), int(camera_index.max())) if camera_index.numel() else (0, -1)
        bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=dtype, device=p.device)
        if lo < -1 or hi >= c:
            raise ShapeError(f"camera_index values must be in [-1, {c}) for {c} cameras; got range [{lo}, {hi}]",
                             name="camera_index")
        if not bool((p[..., 3, :] == bottom).all()):
            raise ShapeError("cameras must be affine 4x4 (bottom row [0, 0, 0, 1]); build them with "
                             "attention_cameras()", name="cameras")
    p = p.expand(b, c, 4, 4)
    eye = torch.eye(4, dtype=dtype, device=p.device).expand(b, 1, 4, 4)
    table_o = torch.cat([p, eye], dim=1)  # (B, C + 1, 4, 4); slot C = identity for text tokens
    table_kv = torch.cat([affine_inverse(p), eye], dim=1)
    idx = torch.where(camera_index < 0, c, camera_index)
    gather_idx = idx[..., None, None].expand(*idx.shape, 4, 4)
    mat_o = torch.gather(table_o, 1, gather_idx)
    mat_kv = torch.gather(table_kv, 1, gather_idx)
    mat_q = mat_o.transpose(-1, -2).contiguous()
    dim_index = torch.tensor(dims.index, dtype=torch.long, device=p.device)
    return CameraTransform(mode=mode, dims=dims, mat_q=mat_q, mat_kv=mat_kv,
                           mat_o=mat_o if mode_spec.values_and_outputs else None, dim_index=dim_index)


def camera_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    transform: CameraTransform,
    *,
    kv_transform: CameraTransform | Literal["same"] | None = "same",
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    enable_gqa: bool = False,
    scale: float | None = None,
    inplace: bool = False,
) -> Tensor:
    """Camera attention around ``F.scaled_dot_product_attention``.

    Args:
        q: (B, Hq, Lq, D); k, v: (B, Hkv, Lk, D).
        transform: the query tokens' transform (q and o).
        kv_transform: the key tokens' transform; ``"same"`` = ``transform`` (self-attention); None = k and v
            are already transformed (a cache of transformed K/V during decoding).
        attn_mask, is_causal, enable_gqa, scale: passed to SDPA unchanged.
        inplace: transform q, k, v in place (they are temporaries of the caller, as inside a model layer;
            only their camera dims are touched) and the output in place when autograd is off.
    Returns:
        (B, Hq, Lq, D) attention output in each query's own camera frame.
    """
    kvt = transform if isinstance(kv_transform, str) else kv_transform
    if isinstance(kv_transform, str) and kv_transform != "same":
        raise ConfigError(f"kv_transform must be a CameraTransform, 'same' or None; got {kv_transform!r}",
                          field="kv_transform", value=kv_transform)
    q = transform.apply_q(q, inplace=inplace)
    if kvt is not None:
        k, v = kvt.apply_k(k, inplace=inplace), kvt.apply_v(v, inplace=inplace)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale,
                                       enable_gqa=enable_gqa)
    return transform.apply_o(o, inplace=inplace and not torch.is_grad_enabled())


def _naive_apply(x: Tensor, mat: Tensor, index: Sequence[int]) -> Tensor:
    """Research-code style: split camera/other dims, reshape into groups, einsum, concatenate, un-permute."""
    d = x.shape[-1]
    rest = [i for i in range(d) if i not in set(index)]
    cam = x[..., list(index)]
    other = x[..., rest]
    b, h, length, n = cam.shape
    cam = cam.reshape(b, h, length, n // 4, 4)
    cam = torch.einsum("blij,bhlgj->bhlgi", mat.to(x.dtype), cam).reshape(b, h, length, n)
    out = torch.cat([cam, other], dim=-1)
    order = torch.argsort(torch.tensor(list(index) + rest, device=x.device))
    return out[..., order]


def naive_camera_sdpa(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    transform: CameraTransform,
    *,
    attn_mask: Tensor | None = None,
    is_causal: bool = False,
    enable_gqa: bool = False,
    scale: float | None = None,
) -> Tensor:
    """The same math written straightforwardly (per-call split/reshape/einsum/cat, KV heads repeated
    before transforming): the benchmark baseline and a second implementation for tests."""
    if enable_gqa and k.shape[1] != q.shape[1]:
        rep = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    index = transform.dims.index
    q = _naive_apply(q, transform.mat_q, index)
    k = _naive_apply(k, transform.mat_kv, index)
    if transform.transforms_values:
        v = _naive_apply(v, transform.mat_kv, index)
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal, scale=scale)
    if transform.mat_o is not None:
        o = _naive_apply(o, transform.mat_o, index)
    return o


def rope2d(
    x: Tensor,
    patch_rc: Tensor,
    dims: Sequence[int] | CameraDims,
    *,
    base: float = 100.0,
    inverse: bool = False,
) -> Tensor:
    """PRoPE's 2D RoPE on patch coordinates, on an explicit set of head dims (standalone use).

    The first half of ``dims`` rotates with the patch column (x), the second half with the patch row (y).
    Inside each half of size 2m, dim j pairs with dim j + m ("split" pairing), frequencies
    ``base^(-k/m)``, k < m. Use ``inverse=False`` for q, k and v and ``inverse=True`` for o.
    Direction as published (liruilong940607/prope ``_rope_apply_coeffs``; positions.md §3.1: q <- D^T q,
    k, v <- D^-1 k, v, o <- D o): with angle a = position * frequency, q, k and v map a pair (x, y) to
    (x cos a + y sin a, -x sin a + y cos a), o to (x cos a - y sin a, x sin a + y cos a). With
    ``dims = range(d/2, d)`` and the camera transform on ``range(0, d/2)`` this is PRoPE's head layout.

    Args:
        x: (B, H, L, D). patch_rc: (B, L, 2) integer or float (row, col) of each token's patch
            (text tokens: any constant, e.g. 0, since the rotation is relative).
        dims: head dims, length a multiple of 4.
    Returns:
        (B, H, L, D) with the chosen dims rotated. Angles are computed in float32 (float64 for float64 x).
    """
    index = list(dims.index if isinstance(dims, CameraDims) else dims)
    if len(index) == 0 or len(index) % 4:
        raise ConfigError(f"rope2d needs a positive multiple of 4 dims; got {len(index)}", field="dims")
    if patch_rc.shape != (x.shape[0], x.shape[2], 2):
        raise ShapeError(f"patch_rc must be (B, L, 2) = {(x.shape[0], x.shape[2], 2)}; got {tuple(patch_rc.shape)}",
                         name="patch_rc", shape=tuple(patch_rc.shape))
    m = len(index) // 4
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32  # angles in >= float32
    inv_freq = base ** (-torch.arange(m, dtype=dtype, device=x.device) / m)  # (m,)
    pos = patch_rc.flip(-1).to(dtype)  # (B, L, 2) as (col, row)
    angle = pos[..., :, None] * inv_freq  # (B, L, 2, m)
    cos = angle.cos().flatten(-2)[:, None].to(x.dtype)  # (B, 1, L, 2m): [col freqs, row freqs]
    sin = angle.sin().flatten(-2)[:, None].to(x.dtype)
    if not inverse:  # q, k, v: the transpose of the rotation (PRoPE's direction); o: the rotation
        sin = -sin
    idx = torch.tensor(index, dtype=torch.long, device=x.device).view(2, 2, m)  # (axis, half, m)
    first, second = idx[:, 0].reshape(-1), idx[:, 1].reshape(-1)
    a, b = x.index_select(-1, first), x.index_select(-1, second)
    out = x.index_copy(-1, first, a * cos - b * sin)
    return out.index_copy(-1, second, a * sin + b * cos)

