"""attention_cameras: re-referencing, translation normalisation, PRoPE intrinsics, closed-form inverse."""

import pytest
import torch
from camera_attention_cases import HW, batch_K, batch_w2c, pad_affine

from posevlm.attention import affine_inverse, attention_cameras
from posevlm.attention.cameras import lift_intrinsics
from posevlm.errors import ConfigError, ShapeError
from posevlm.geometry import camera_centers, intrinsics_normalize, w2c_to_c2w

B, C = 2, 5
EYE = torch.eye(4, dtype=torch.float64)
F64 = dict(atol=1e-10, rtol=0)


@pytest.mark.parametrize("reference", ["first", "medoid", 3, -1])
@pytest.mark.parametrize("mode", ["prope", "gta", "cape"])
def test_reference_camera_is_exactly_identity(reference, mode):
    w2c, K = batch_w2c(30, B, C), batch_K(30, B, C)
    use_k = mode == "prope"
    cams = attention_cameras(w2c, K if use_k else None, HW if use_k else None, mode=mode, reference=reference)
    ref = {"first": 0, 3: 3, -1: C - 1}.get(reference)
    if ref is None:
        from posevlm.geometry import reference_index

        ref = int(reference_index(w2c, "medoid")[0])
        assert torch.equal(cams[0, ref], EYE)
    else:
        assert torch.equal(cams[:, ref], EYE.expand(B, 4, 4))
    assert torch.equal(cams[..., 3, :], EYE[3].expand(B, C, 4))


@pytest.mark.parametrize("norm", ["max", "median", "mean"])
def test_translation_normalisation(norm):
    w2c = batch_w2c(31, B, C)
    cams = attention_cameras(w2c, mode="gta", translation_norm=norm)
    dist = camera_centers(cams)[:, 1:].norm(dim=-1)
    stat = {"max": dist.amax(-1), "median": dist.quantile(0.5, dim=-1), "mean": dist.mean(-1)}[norm]
    torch.testing.assert_close(stat, torch.ones(B, dtype=torch.float64), **F64)
    raw = attention_cameras(w2c, mode="gta", translation_norm="none")
    torch.testing.assert_close(raw, w2c @ w2c_to_c2w(w2c[:, :1]), **F64)


def test_static_trajectory_keeps_scale():
    w2c = batch_w2c(32, 1, 1).expand(B, C, 4, 4)
    cams = attention_cameras(w2c, mode="gta")
    assert torch.isfinite(cams).all()
    torch.testing.assert_close(cams, EYE.expand(B, C, 4, 4), **F64)


def test_prope_relative_products_match_the_spec_formula():
    w2c, K = batch_w2c(33, B, C), batch_K(33, B, C)
    cams = attention_cameras(w2c, K, HW, mode="prope", translation_norm="none")
    lk = lift_intrinsics(intrinsics_normalize(K, HW))
    expected = lk[:, 1] @ w2c[:, 1] @ w2c_to_c2w(w2c[:, 3]) @ torch.linalg.inv(lk[:, 3])
    torch.testing.assert_close(cams[:, 1] @ affine_inverse(cams[:, 3]), expected, **F64)


def test_prope_without_K_is_gta_and_dtypes():
    w2c = batch_w2c(34, B, C)
    assert torch.equal(attention_cameras(w2c, mode="prope"), attention_cameras(w2c, mode="gta"))
    assert attention_cameras(w2c, mode="gta").dtype == torch.float64
    assert attention_cameras(w2c.half(), mode="gta").dtype == torch.float32
    assert attention_cameras(w2c.float(), batch_K(34, B, C).float(), HW, mode="prope").dtype == torch.float32


def test_affine_inverse_closed_form():
    w2c, K = batch_w2c(35, B, C), batch_K(35, B, C)
    cams = attention_cameras(w2c, K, HW, mode="prope")
    torch.testing.assert_close(affine_inverse(cams), torch.linalg.inv(cams), **F64)
    torch.testing.assert_close(affine_inverse(cams) @ cams, EYE.expand(B, C, 4, 4), **F64)
    assert torch.equal(affine_inverse(EYE), EYE)


def test_errors_name_the_argument():
    w2c, K = batch_w2c(36, B, C), batch_K(36, B, C)
    with pytest.raises(ConfigError) as e:
        attention_cameras(w2c, mode="rope")
    assert e.value.field == "mode"
    with pytest.raises(ConfigError) as e:
        attention_cameras(w2c, K, mode="prope")
    assert e.value.field == "image_hw"
    with pytest.raises(ConfigError):
        attention_cameras(w2c, K, HW, mode="gta")
    with pytest.raises(ConfigError):
        attention_cameras(w2c, mode="gta", translation_norm="diameter")
    with pytest.raises(ShapeError):
        attention_cameras(w2c[..., :3, :3], mode="gta")


@pytest.mark.parametrize("mode,norm,reference", [("prope", "max", "first"), ("gta", "median", "medoid"),
                                                 ("cape", "mean", 2), ("gta", "none", "first")])
def test_gradcheck_float64(mode, norm, reference):
    """float64 gradcheck w.r.t. every w2c entry (and K for prope): re-referencing, translation normalisation,
    intrinsics and the exact identity written at the reference camera."""
    top = batch_w2c(31, 1, 4)[..., :3, :].clone().requires_grad_(True)
    K = batch_K(31, 1, 4).requires_grad_(mode == "prope")

    def fn(t, k):
        use_k = mode == "prope"
        return attention_cameras(pad_affine(t), k if use_k else None, HW if use_k else None, mode=mode,
                                 translation_norm=norm, reference=reference)

    assert torch.autograd.gradcheck(fn, (top, K), eps=1e-6, atol=1e-6)
