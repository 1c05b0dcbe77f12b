"""Vectorised ray-cast renderer for synthetic layouts: RGB, metric z-depth, instance ids, surface codes.

Rays go through pixel centres (u = j + 0.5, v = i + 0.5) with camera-frame direction
((u - cx) / fx, (v - cy) / fy, 1), so the ray parameter of a hit *is* its OpenCV z-depth.
The room interior is the union of its floor boxes extruded to [0, height]; the visible room surface
is where the ray leaves that union. Objects are axis-aligned boxes (slab test); each is culled to the
screen rectangle of its near-plane-clipped projection, so cost scales with covered pixels; nearest
hit wins. Shading: base colour (category/instance or room surface) x Lambert (fixed light, ambient)
x procedural texture (floor tiles, wall stripes, ceiling panels, faint object bands, per-cell tone
noise) x mild distance falloff. No randomness: output depends only on the inputs.

Frames are rendered one by one, each in horizontal bands of ~24k pixels so every temporary stays
cache-sized and below the allocator's mmap threshold (about 2x faster at 640x480 than whole-frame
temporaries on a 2-core VM). A slow float64 reference without culling lives in
tests/scenes/synthetic/test_render.py (``_reference``) and must agree pixel for pixel.

Shapes: S frames, H x W pixels. Float32 for rays and images, float64 for poses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from posevlm.errors import ConfigError, ConventionError, ShapeError
from posevlm.scenes.synthetic.layout import Layout, points_in_room_xy

__all__ = [
    "RenderOutput",
    "render",
    "render_frame",
    "SURFACE_FLOOR",
    "SURFACE_CEILING",
    "SURFACE_WALL",
    "SURFACE_OBJECT",
]

SURFACE_FLOOR, SURFACE_CEILING, SURFACE_WALL, SURFACE_OBJECT = 0, 1, 2, 3
_NEAR = 1e-6  # metres; hits closer than this are ignored

# face codes: 0 +x, 1 -x, 2 +y, 3 -y, 4 +z, 5 -z (outward normal for objects, inward for the room)
_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], dtype=np.float64)
_LIGHT = np.array([0.35, 0.55, 0.76]) / np.linalg.norm([0.35, 0.55, 0.76])  # towards the light
_LAMBERT = (0.42 + 0.5 * np.clip(_NORMALS @ _LIGHT, 0, None)).astype(np.float32)  # (6,)
_ROOM_RGB = np.array([[168, 140, 110], [236, 234, 228], [196, 204, 210]], dtype=np.float32)  # floor/ceil/wall
# texture per surface class (floor, ceiling, wall, object):
#   cells per metre along the in-plane coordinates (a, b), checker, per-cell noise and grout amplitudes
_TEX_SA = np.array([2.0, 1 / 0.6, 1 / 0.3, 0.0], dtype=np.float32)
_TEX_SB = np.array([2.0, 1 / 0.6, 0.0, 1 / 0.08], dtype=np.float32)
_TEX_CHECKER = np.array([0.06, 0.0, 0.05, 0.04], dtype=np.float32)
_TEX_NOISE = np.array([0.12, 0.03, 0.05, 0.04], dtype=np.float32)
_TEX_GROUT = np.array([0.3, 0.12, 0.0, 0.0], dtype=np.float32)
_GROUT_WIDTH = np.float32(0.04)  # fraction of a cell
_NOISE_TABLE = (np.random.default_rng(0).random(1024) - 0.5).astype(np.float32)  # fixed, seeded


@dataclass(frozen=True)
class RenderOutput:
    """Rendered frames.

    Attributes:
        rgb: (S, H, W, 3) uint8.
        depth: (S, H, W) float32 metric z-depth (OpenCV camera-frame z of the hit point), > 0.
        instance: (S, H, W) int32; 0 = room structure, k = ``SceneObject.instance_id``.
        surface: (S, H, W) uint8; 0 floor, 1 ceiling, 2 wall, 3 object.
    """

    rgb: np.ndarray
    depth: np.ndarray
    instance: np.ndarray
    surface: np.ndarray


def _check_inputs(layout: Layout, w2c_opencv, K_pixels, image_hw) -> tuple[np.ndarray, np.ndarray, int, int]:
    if not isinstance(layout, Layout):
        raise ConfigError(f"layout must be a Layout; got {type(layout).__name__}.", field="layout",
                          value=type(layout).__name__)
    w2c = np.asarray(w2c_opencv, dtype=np.float64)
    if w2c.shape == (4, 4):
        w2c = w2c[None]
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or len(w2c) == 0:
        raise ShapeError(f"w2c_opencv must have shape (S, 4, 4) or (4, 4); got {w2c.shape}.",
                         name="w2c_opencv", shape=w2c.shape)
    K = np.asarray(K_pixels, dtype=np.float64)
    if K.shape == (3, 3):
        K = np.broadcast_to(K, (len(w2c), 3, 3))
    if K.shape != (len(w2c), 3, 3):
        raise ShapeError(f"K_pixels must have shape (3, 3) or ({len(w2c)}, 3, 3); got {K.shape}.",
                         name="K_pixels", shape=K.shape)
    hw = tuple(int(v) for v in image_hw)
    if len(hw) != 2 or min(hw) <= 0:
        raise ShapeError(f"image_hw must be (H, W) with positive entries; got {image_hw}.", name="image_hw")
    if not (np.isfinite(w2c).all() and np.isfinite(K).all()):
        raise ConventionError("w2c_opencv and K_pixels must be finite.")
    rot = w2c[:, :3, :3]
    err = np.abs(rot @ rot.transpose(0, 2, 1) - np.eye(3)).max((1, 2))
    bottom_err = np.abs(w2c[:, 3] - [0, 0, 0, 1]).max(1)
    bad = np.flatnonzero((err > 1e-4) | (np.linalg.det(rot) < 0) | (bottom_err > 1e-9))
    if bad.size:
        raise ConventionError(f"w2c_opencv is not a rigid transform at frames {bad[:8].tolist()} "
                              f"(worst |R R^T - I| = {err.max():.3g}).")
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any() or (K[:, 0, 1] != 0).any() or \
            (np.abs(K[:, 2] - [0, 0, 1]).max() > 0):
        raise ConfigError("K_pixels must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0 (no skew).",
                          field="K_pixels", value=K[0].tolist())
    centres = -np.einsum("sji,sj->si", rot, w2c[:, :3, 3])
    room = layout.room
    inside = points_in_room_xy(room, centres[:, :2]) & (centres[:, 2] > 0) & (centres[:, 2] < room.height)
    if not inside.all():
        bad = np.flatnonzero(~inside)
        raise ConventionError(f"camera centres of frames {bad[:8].tolist()} are outside the room interior "
                              f"(first: {centres[bad[0]].round(3).tolist()}). The renderer needs cameras "
                              "inside the room; check that you passed world-to-camera (w2c), not "
                              "camera-to-world.")
    return w2c, K, hw[0], hw[1]


def _cull_rects(bounds: np.ndarray, r_w2c: np.ndarray, t_w2c: np.ndarray, K: np.ndarray,
                h: int, w: int) -> np.ndarray:
    """(n, 2, 3) boxes -> (n, 4) int pixel windows [i0, i1, j0, j1) holding every hit (empty if i1 <= i0)."""
    n = len(bounds)
    sel = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)])  # (8, 3) min/max picks
    corners = bounds[:, sel, [0, 1, 2]]  # (n, 8, 3)
    cam = corners @ r_w2c.T + t_w2c
    edges = np.array([(i, j) for i in range(8) for j in range(i + 1, 8) if bin(i ^ j).count("1") == 1])
    p0, p1 = cam[:, edges[:, 0]], cam[:, edges[:, 1]]  # (n, 12, 3)
    z0, z1 = p0[..., 2], p1[..., 2]
    crosses = (z0 - _NEAR) * (z1 - _NEAR) < 0
    s = np.where(crosses, (_NEAR - z0) / np.where(crosses, z1 - z0, 1.0), 0.0)
    clip = p0 + s[..., None] * (p1 - p0)  # (n, 12, 3) points on the near plane
    pts = np.concatenate([cam, clip], axis=1)
    valid = np.concatenate([cam[..., 2] >= _NEAR, crosses], axis=1)
    z = np.maximum(pts[..., 2], _NEAR)
    u = K[0, 0] * pts[..., 0] / z + K[0, 2]
    v = K[1, 1] * pts[..., 1] / z + K[1, 2]
    big = 1e12
    umin, umax = np.where(valid, u, big).min(1), np.where(valid, u, -big).max(1)
    vmin, vmax = np.where(valid, v, big).min(1), np.where(valid, v, -big).max(1)
    # pixel centres c + 0.5 inside [min, max], with one pixel of slack
    j0 = np.clip(np.ceil(umin - 0.5) - 1, 0, w).astype(np.int64)
    j1 = np.clip(np.floor(umax - 0.5) + 2, 0, w).astype(np.int64)
    i0 = np.clip(np.ceil(vmin - 0.5) - 1, 0, h).astype(np.int64)
    i1 = np.clip(np.floor(vmax - 0.5) + 2, 0, h).astype(np.int64)
    out = np.stack([i0, i1, j0, j1], -1)
    out[~valid.any(1)] = 0
    return out.reshape(n, 4)


def _nz(x: float) -> np.float32:
    """Keep a plane offset away from exactly 0 so 0 * inf never makes NaN for axis-parallel rays."""
    return np.float32(x if x != 0 else 1e-12)


_BAND_PIXELS = 24576  # rows are rendered in bands of about this many pixels (cache-sized temporaries)


def _render_one(layout: Layout, w2c: np.ndarray, K: np.ndarray, h: int, w: int, out_rgb: np.ndarray,
                out_depth: np.ndarray, out_inst: np.ndarray, out_surf: np.ndarray) -> None:
    """Render one frame into the (H, W, ...) output views, in horizontal bands of rows."""
    r_c2w = w2c[:3, :3].T
    o = -r_c2w @ w2c[:3, 3]
    xn = ((np.arange(w) + 0.5 - K[0, 2]) / K[0, 0]).astype(np.float32)
    yn = ((np.arange(h) + 0.5 - K[1, 2]) / K[1, 1]).astype(np.float32)
    bounds = np.stack([ob.bounds for ob in layout.objects]) if layout.objects else np.zeros((0, 2, 3))
    rects = _cull_rects(bounds, w2c[:3, :3], w2c[:3, 3], K, h, w)
    palette = np.zeros((3 + max([ob.instance_id for ob in layout.objects], default=0), 3), np.float32)
    palette[:3] = _ROOM_RGB  # rows: floor, ceiling, wall, then instance_id + 2
    for ob in layout.objects:
        palette[ob.instance_id + 2] = ob.color_rgb
    step = max(1, _BAND_PIXELS // w)
    for r0 in range(0, h, step):
        r1 = min(h, r0 + step)
        band = rects.copy()
        band[:, 0] = np.clip(band[:, 0], r0, r1) - r0
        band[:, 1] = np.clip(band[:, 1], r0, r1) - r0
        _render_band(layout, r_c2w, o, xn, yn[r0:r1], bounds, band, palette,
                     out_rgb[r0:r1], out_depth[r0:r1], out_inst[r0:r1], out_surf[r0:r1])


def _render_band(layout: Layout, r_c2w: np.ndarray, o: np.ndarray, xn: np.ndarray, yn: np.ndarray,
                 bounds: np.ndarray, rects: np.ndarray, palette: np.ndarray, out_rgb: np.ndarray,
                 out_depth: np.ndarray, out_inst: np.ndarray, out_surf: np.ndarray) -> None:
    """Render the rows with normalised coordinates ``yn`` (h,) x ``xn`` (w,); ``rects`` are band-local."""
    f32, u8 = np.float32, np.uint8
    # world ray directions (h, w) per axis, as outer sums: one full-size op each
    d = [(f32(r_c2w[k, 0]) * xn)[None, :] + (f32(r_c2w[k, 1]) * yn + f32(r_c2w[k, 2]))[:, None]
         for k in range(3)]
    depth, inst, surf = out_depth, out_inst, out_surf  # written in place
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = [f32(1.0) / dk for dk in d]
        # --- room: exit of the union of floor boxes (the one holding the camera, extended through
        # boxes the ray enters before leaving), unless the floor or ceiling comes first
        room, boxes = layout.room, layout.room.boxes_xy
        tz = np.maximum(_nz(-o[2]) * inv[2], _nz(room.height - o[2]) * inv[2])
        exits, enters, axes, inside = [], [], [], []
        for b in boxes:
            tx0, tx1 = _nz(b[0] - o[0]) * inv[0], _nz(b[2] - o[0]) * inv[0]
            ty0, ty1 = _nz(b[1] - o[1]) * inv[1], _nz(b[3] - o[1]) * inv[1]
            txf, tyf = np.maximum(tx0, tx1), np.maximum(ty0, ty1)
            exits.append(np.minimum(txf, tyf))
            axes.append(txf < tyf)  # True: leaves through an x wall
            enters.append(np.maximum(np.minimum(tx0, tx1), np.minimum(ty0, ty1)) if len(boxes) > 1 else None)
            inside.append(b[0] <= o[0] <= b[2] and b[1] <= o[1] <= b[3])
        first = int(np.flatnonzero(inside)[0])
        t_wall, wall_x = exits[first], axes[first]
        for k in range(len(boxes)):
            if k != first and inside[k]:
                longer = exits[k] > t_wall
                t_wall, wall_x = np.where(longer, exits[k], t_wall), np.where(longer, axes[k], wall_x)
        for _ in range(len(boxes) - 1):
            for k in range(len(boxes)):
                ext = (enters[k] <= t_wall) & (exits[k] > t_wall)
                t_wall, wall_x = np.where(ext, exits[k], t_wall), np.where(ext, axes[k], wall_x)
        flat = tz < t_wall  # floor or ceiling
        np.minimum(tz, t_wall, out=depth)
        up = (d[2] > 0).view(u8)
        np.copyto(surf, np.where(flat, up, u8(SURFACE_WALL)))  # floor 0, ceiling 1, wall 2
        # inward normals: floor +z (4), ceiling -z (5), x wall -sign(dx) (0 / 1), y wall -sign(dy) (2 / 3)
        face = np.where(flat, up + u8(4), np.where(wall_x, (d[0] > 0).view(u8), (d[1] > 0).view(u8) + u8(2)))
        inst[...] = 0

        # --- objects: slab test inside each culled window, z-buffered
        for ob, b, (i0, i1, j0, j1) in zip(layout.objects, bounds, rects):
            if i1 <= i0 or j1 <= j0:
                continue
            win = (slice(i0, i1), slice(j0, j1))
            near, far, codes = [], [], []
            for k in range(3):
                lo, hi = _nz(b[0, k] - o[k]) * inv[k][win], _nz(b[1, k] - o[k]) * inv[k][win]
                if o[k] < b[0, k]:  # camera below the slab: enters through the min face
                    near.append(lo), far.append(hi), codes.append(u8(2 * k + 1))
                elif o[k] > b[1, k]:
                    near.append(hi), far.append(lo), codes.append(u8(2 * k))
                else:  # inside the slab: this axis never gives the entry face of a hit
                    near.append(np.minimum(lo, hi)), far.append(np.maximum(lo, hi)), codes.append(u8(0))
            t_near = np.maximum(np.maximum(near[0], near[1]), near[2])
            hit = t_near < depth[win]
            hit &= t_near <= np.minimum(np.minimum(far[0], far[1]), far[2])
            hit &= t_near > _NEAR
            if not hit.any():
                continue
            fcode = np.where(near[0] >= np.maximum(near[1], near[2]), codes[0],
                             np.where(near[1] >= near[2], codes[1], codes[2]))
            np.copyto(depth[win], t_near, where=hit)
            np.copyto(inst[win], ob.instance_id, where=hit)
            np.copyto(face[win], fcode, where=hit)

        # --- shading: base colour x Lambert x texture x falloff
        is_obj = inst > 0
        np.copyto(surf, u8(SURFACE_OBJECT), where=is_obj)
        pidx = np.where(is_obj, inst + 2, surf)  # palette rows: floor, ceiling, wall, objects 1..n
        px, py, pz = (f32(o[k]) + depth * d[k] for k in range(3))
        axis = face >> 1
        ua = np.where(axis == 0, py, px) * np.take(_TEX_SA, surf)  # in-plane coordinates, in cells
        ub = np.where(axis == 2, py, pz) * np.take(_TEX_SB, surf)
        fa, fb = np.floor(ua), np.floor(ub)
        ia, ib = fa.astype(np.int32), fb.astype(np.int32)
        noise = np.take(_NOISE_TABLE, (ia * 7919 + ib * 104729 + pidx * 3571) & 1023)  # per-cell tone
        grout = (ua - fa) < _GROUT_WIDTH
        grout |= (ub - fb) < _GROUT_WIDTH
        tex = f32(1) + np.take(_TEX_NOISE, surf) * noise
        tex -= np.take(_TEX_CHECKER, surf) * ((ia + ib) & 1).astype(f32)
        tex -= np.take(_TEX_GROUT, surf) * grout
        shade = np.minimum(np.take(_LAMBERT, face) * tex / (f32(1) + f32(0.03) * depth), f32(1))
    for c in range(3):
        out_rgb[..., c] = np.take(palette[:, c], pidx) * shade + f32(0.5)


def render(layout: Layout, w2c_opencv: np.ndarray, K_pixels: np.ndarray,
           image_hw: tuple[int, int]) -> RenderOutput:
    """Render frames of ``layout`` seen by pinhole cameras.

    Args:
        layout: room and objects (world metres, z up).
        w2c_opencv: (S, 4, 4) or (4, 4) world-to-camera, OpenCV axes; cameras must be inside the room.
        K_pixels: (3, 3) shared or (S, 3, 3) per-frame intrinsics (no skew) for ``image_hw``.
        image_hw: (H, W) output size in pixels.
    Returns:
        ``RenderOutput`` with S frames (S = 1 for a (4, 4) pose). Frames are rendered one at a time,
        so a batch equals its frames rendered separately. A camera inside an object sees through it.
    Raises:
        ShapeError: bad shapes. ConventionError: non-rigid or non-finite poses, or a camera centre
        outside the room interior (often c2w passed as w2c). ConfigError: bad intrinsics or layout.
    """
    w2c, K, h, w = _check_inputs(layout, w2c_opencv, K_pixels, image_hw)
    s = len(w2c)
    out = RenderOutput(rgb=np.empty((s, h, w, 3), np.uint8), depth=np.empty((s, h, w), np.float32),
                       instance=np.empty((s, h, w), np.int32), surface=np.empty((s, h, w), np.uint8))
    for k in range(s):
        _render_one(layout, w2c[k], K[k], h, w, out.rgb[k], out.depth[k], out.instance[k], out.surface[k])
    return out


def render_frame(layout: Layout, w2c_opencv: np.ndarray, K_pixels: np.ndarray,
                 image_hw: tuple[int, int]) -> RenderOutput:
    """Render one (4, 4) ``w2c_opencv`` pose with (3, 3) ``K_pixels``; the output has S = 1."""
    w2c = np.asarray(w2c_opencv)
    if w2c.shape != (4, 4):
        raise ShapeError(f"render_frame takes one (4, 4) w2c_opencv; got {w2c.shape}. "
                         "Use render() for batches.", name="w2c_opencv", shape=w2c.shape)
    return render(layout, w2c, K_pixels, image_hw)
