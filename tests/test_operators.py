"""Linear operators against their dense matrices (float64, small images)."""

import math

import pytest
import torch
import torch.nn.functional as F

from engine.core.operators import (Blur, Compose, Degradation, Downsample, Grayscale, Identity, Mask,
                              Scale, blur_matrix)
from engine.core.step import BadInputError

SIZE = 8  # divisible by 2 and 4; dense matrices stay ≤ 192 × 192
CLI_SPECS = ["blur=2.0,noise=0.05", "downsample=4,noise=0.01", "mask=box:0.5",
             "mask=random:0.7:3", "grayscale", "blur=1,downsample=2,mask=half:0.5,grayscale"]

OPERATORS = {
    "identity": lambda c: Identity(),
    "scale": lambda c: Scale(0.7),
    "blur": lambda c: Blur(1.3),
    "blur-mild": lambda c: Blur(0.5),
    "blur-truncated": lambda c: Blur(2.0, radius=3),
    "mask-box": lambda c: Mask("box", 0.5),
    "mask-frame": lambda c: Mask("frame", 0.4),
    "mask-random": lambda c: Mask("random", 0.7, seed=3),
    "mask-half": lambda c: Mask("half", 0.5),
    "downsample-2": lambda c: Downsample(2),
    "downsample-4": lambda c: Downsample(4),
    "grayscale": lambda c: Grayscale(c),
    "compose-blur-down-mask": lambda c: Compose((Blur(1.0), Downsample(2), Mask("random", 0.3, 1))),
    "compose-blur-mask-gray": lambda c: Compose((Blur(0.8), Mask("box", 0.25), Grayscale(c))),
    "compose-scale-downsample": lambda c: Compose((Scale(0.6), Downsample(2))),  # RGM-SR's A_t
    "compose-blur-mild-downsample-gray": lambda c: Compose((Blur(0.5), Downsample(2), Grayscale(c))),
    **{f"cli:{spec}": (lambda c, spec=spec: Degradation.parse(spec).operator(c)) for spec in CLI_SPECS},
}
# pinv is exact (Moore–Penrose) for these; for Compose it is a product of pinvs, exact only
# with at most one factor that is not a scaling (the single-operator CLI specs)
EXACT_PINV = ["identity", "scale", "blur", "blur-mild", "blur-truncated", "mask-box", "mask-frame",
              "mask-random", "mask-half", "downsample-2", "downsample-4", "grayscale",
              "cli:blur=2.0,noise=0.05", "cli:downsample=4,noise=0.01", "cli:mask=box:0.5",
              "cli:grayscale", "compose-scale-downsample"]
FULL_ROW_RANK = ["identity", "scale", "blur-mild", "downsample-2", "downsample-4", "grayscale",
                 "compose-blur-mild-downsample-gray"]


def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def dense(op, shape):
    """The matrix of ``op`` acting on one image of ``shape`` (C, H, W): (outputs, inputs)."""
    d = math.prod(shape)
    basis = torch.eye(d, dtype=torch.float64).reshape(d, *shape)
    return op.forward(basis).reshape(d, -1).T


def pair(name, channels, seed=0):
    """The operator, random x (2, C, H, W) and random y in its output space."""
    op = OPERATORS[name](channels)
    x = rand(2, channels, SIZE, SIZE, seed=seed)
    y = rand(*op.forward(x).shape, seed=seed + 1)
    return op, x, y


def dot(a, b):
    return (a * b).sum((1, 2, 3))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", OPERATORS)
def test_adjoint_identity(name, channels):
    op, x, y = pair(name, channels)
    lhs, rhs = dot(op.forward(x), y), dot(x, op.adjoint(y))
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10 * lhs.abs().max().item())


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", OPERATORS)
def test_prox_equals_a_dense_solve_and_is_optimal(name, channels):
    op, z, y = pair(name, channels, seed=4)
    lam = 0.7
    a = dense(op, z.shape[1:])
    system = torch.eye(a.shape[1], dtype=torch.float64) + lam * a.T @ a
    expected = torch.linalg.solve(system, (z.flatten(1) + lam * y.flatten(1) @ a).T).T
    x = op.prox(z, y, lam)
    tol = 1e-6 if isinstance(op, Compose) else 1e-10  # Compose: conjugate gradients to 1e-7
    torch.testing.assert_close(x.flatten(1), expected, rtol=tol, atol=tol)
    # optimality: ∇ [½‖Ax − y‖² + ‖x − z‖²/(2λ)] = 0, by autograd (no adjoint involved)
    x = x.detach().requires_grad_()
    objective = 0.5 * ((op.forward(x) - y) ** 2).sum() + ((x - z) ** 2).sum() / (2 * lam)
    (grad,) = torch.autograd.grad(objective, x)
    assert grad.abs().max() < tol * 10 * (z.abs().max() / lam)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", EXACT_PINV)
def test_pinv_equals_the_dense_pseudo_inverse(name, channels):
    op, _, y = pair(name, channels, seed=7)
    a = dense(op, (channels, SIZE, SIZE))
    rtol = op.rcond if isinstance(op, Blur) else 1e-10
    expected = y.flatten(1) @ torch.linalg.pinv(a, rtol=rtol).T
    torch.testing.assert_close(op.pinv(y).flatten(1), expected, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", FULL_ROW_RANK)
def test_pinv_is_a_right_inverse_for_full_row_rank(name, channels):
    op, _, y = pair(name, channels, seed=9)
    torch.testing.assert_close(op.forward(op.pinv(y)), y, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", ["mask-box", "mask-random", "mask-half", "mask-frame"])
def test_penrose_identity_for_rank_deficient_operators(name):
    op, x, _ = pair(name, 3, seed=11)
    ax = op.forward(x)
    torch.testing.assert_close(op.forward(op.pinv(ax)), ax, rtol=1e-8, atol=1e-8)


# --- blur --------------------------------------------------------------------------------


def gaussian_kernel(sigma, radius):
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-taps**2 / (2 * sigma**2))
    return k / k.sum()


def test_blur_kernel_sums_to_one():
    g = blur_matrix(1.5, 21, 4)
    assert g[10].sum().item() == pytest.approx(1.0, abs=1e-14)  # an interior row holds it all
    assert g[0].sum().item() < 0.8  # zero padding: the border row loses half the kernel
    torch.testing.assert_close(g[10, 6:15], gaussian_kernel(1.5, 4))
    impulse = torch.zeros(1, 1, 21, 21, dtype=torch.float64)
    impulse[..., 10, 10] = 1
    response = Blur(1.5, radius=4).forward(impulse)
    assert response.sum().item() == pytest.approx(1.0, abs=1e-14)


def test_blur_matrix_is_symmetric():
    for op in (Blur(1.3), Blur(2.0, radius=3), Blur(6.0)):
        a = dense(op, (1, 6, 6))
        torch.testing.assert_close(a, a.T, rtol=0, atol=1e-15)


def test_tiny_blur_is_the_identity():
    x = rand(2, 3, 28, 28, seed=2)
    torch.testing.assert_close(Blur(0.01).forward(x), x, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sigma, radius", [(1.3, 3), (0.7, 1), (2.5, None)])
@pytest.mark.parametrize("channels", [1, 3])
def test_separable_blur_equals_zero_padded_convolution(sigma, radius, channels):
    x = rand(2, channels, 11, 11, seed=3)
    r = 11 if radius is None else radius  # default radius = the image side
    k = gaussian_kernel(sigma, r)
    kernel = torch.outer(k, k).expand(channels, 1, -1, -1)
    expected = F.conv2d(x, kernel, padding=r, groups=channels)
    torch.testing.assert_close(Blur(sigma, radius=radius).forward(x), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma, radius", [(0.5, None), (2.0, None), (5.0, None), (3.0, 20)])
def test_block_banded_blur_of_a_large_image_equals_the_dense_factors(sigma, radius):
    """Above BANDED_ABOVE pixels a side the forward skips taps beyond 8σ (< 1e-14 of the
    centre): float64 agrees with G_H X G_Wᵀ to 1e-12, float32 to its rounding."""
    from engine.core.operators.blur import BANDED_ABOVE

    x = rand(1, 3, 300, 520, seed=4)
    assert min(x.shape[-2:]) > BANDED_ABOVE
    op = Blur(sigma, radius=radius)
    gh = blur_matrix(sigma, 300, 300 if radius is None else radius)
    gw = blur_matrix(sigma, 520, 520 if radius is None else radius)
    expected = gh @ x @ gw.T
    torch.testing.assert_close(op.forward(x), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(op.forward(x.float()), expected.float(), rtol=0, atol=1e-6)
    torch.testing.assert_close(op.adjoint(x), expected, rtol=0, atol=1e-12)  # still self-adjoint


def test_block_banded_blur_builds_no_dense_factor():
    """A new σ on a large image costs a BLOCK × (BLOCK + 2·band) slab, not the n×n factor
    (128 MB in float64 at n = 4000, each one cached): a drag over σ meets a new σ per move."""
    from engine.core.operators.blur import BLOCK, band_slab

    x = rand(1, 3, 300, 520, seed=5).float()
    blur_matrix.cache_clear()
    band_slab.cache_clear()
    Blur(1.37).forward(x)
    assert blur_matrix.cache_info().currsize == 0
    slab = band_slab(1.37, 300, 11, torch.float32, torch.device("cpu"))
    assert slab.shape == (BLOCK, BLOCK + 22)
    dense_rows = blur_matrix(1.37, 300, 300)[100:100 + BLOCK, 100 - 11:100 + BLOCK + 11].float()
    offsets = torch.arange(BLOCK)[:, None] - torch.arange(BLOCK + 22)[None, :] + 11
    inside = offsets.abs() <= 11  # |i − j| ≤ band = ⌈8σ⌉
    assert torch.equal(slab[inside], dense_rows[inside])  # the dense factor's own entries
    assert (slab[~inside] == 0).all() and dense_rows[~inside].max() < 1e-13 * dense_rows.max()


@pytest.mark.parametrize("op", [Identity(), Scale(0.5), Blur(1.5), Blur(2.0, radius=3),
                                Mask("random", 0.3, 2)], ids=repr)
def test_shape_keeping_operators_answer_out_shape_without_a_forward(op):
    from engine.core.operators import Operator

    assert op.keeps_shape
    for shape in [(1, 3, 28, 28), (2, 1, 300, 520)]:
        assert op.out_shape(shape) == Operator.out_shape(Downsample(1), shape) == shape
        assert tuple(op.forward(torch.zeros(shape, device="meta")).shape) == shape
    assert not Downsample(2).keeps_shape and Downsample(2).out_shape((1, 3, 8, 8)) == (1, 3, 4, 4)
    assert Grayscale(3).out_shape((1, 3, 8, 8)) == (1, 1, 8, 8)


def test_stage_memo_gives_the_same_y_and_skips_unchanged_stages(monkeypatch):
    """The studio's preview measures through a `StageMemo`: bit for bit the y of the job's
    path, with only the stages after the first changed operator recomputed."""
    from engine.core.operators import StageMemo, measure_image
    from engine.core.operators.masks import Mask as MaskOp

    calls = []
    for cls in (Blur, MaskOp):
        original = cls.forward
        monkeypatch.setattr(cls, "forward", lambda self, x, original=original:
                            calls.append(self.name) or original(self, x))
    image = torch.rand(3, 300, 264, generator=torch.Generator().manual_seed(6))
    memo = StageMemo()
    sequence = [("blur=1.5,mask=box:0.3,noise=0.05", ["blur", "mask"]),
                ("blur=1.5,mask=box:0.3,noise=0.1", []),  # σ_y: no operator again
                ("blur=1.5,mask=box:0.6,noise=0.1", ["mask"]),  # the mask, not the blur
                ("blur=2.5,mask=box:0.6,noise=0.1", ["blur", "mask"]),
                ("blur=2.5,noise=0.1", []),  # the leading blur was kept
                ("mask=box:0.6", ["mask"])]
    for spec, recomputed in sequence:
        d = Degradation.parse(spec)
        del calls[:]
        _, y = measure_image(d, image[None], seed=3, memo=memo)  # a new view each call, as the studio's
        assert calls == recomputed, spec
        _, expected = measure_image(d, image[None], seed=3)
        assert torch.equal(y, expected), spec
    image.mul_(0.5)  # changed in place: nothing kept is reused
    del calls[:]
    _, y = measure_image(Degradation.parse("mask=box:0.6"), image[None], seed=3, memo=memo)
    assert calls == ["mask"] and torch.equal(y, MaskOp("box", 0.6).forward(image[None]))


def test_blur_darkens_at_the_borders():
    """No renormalisation: a corner keeps (the kernel's half with the centre tap)²."""
    flat = Blur(2.0).forward(torch.ones(1, 1, 16, 16, dtype=torch.float64))
    half = gaussian_kernel(2.0, 16)[16:].sum().item()
    assert flat[0, 0, 0, 0].item() == pytest.approx(half**2, rel=1e-12) and half**2 < 0.4
    assert flat[0, 0, 8, 8] > 0.99


# --- degradations --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", CLI_SPECS + ["none", "mask=frame:0.25", "noise=0.1"])
def test_degradation_spec_round_trips(spec):
    degradation = Degradation.parse(spec)
    assert Degradation.parse(degradation.spec()) == degradation
    assert Degradation.parse(degradation.spec()).spec() == degradation.spec()


def test_degradation_fields_are_read():
    d = Degradation.parse("blur=1,downsample=2,mask=random:0.7:3,grayscale,noise=0.05")
    assert (d.blur, d.downsample, d.mask, d.mask_level, d.mask_seed, d.grayscale, d.noise) == \
        (1.0, 2, "random", 0.7, 3, True, 0.05)
    op = d.operator(3)
    assert [type(o) for o in op.ops] == [Blur, Downsample, Mask, Grayscale]
    assert Degradation.parse("grayscale").operator(1) == Identity()  # nothing to remove


def test_measure_adds_scaled_noise():
    d = Degradation.parse("downsample=2,noise=0.05")
    x, eps = rand(1, 3, SIZE, SIZE, seed=5), rand(1, 3, 4, 4, seed=6)
    torch.testing.assert_close(d.measure(x, eps), F.avg_pool2d(x, 2) + 0.05 * eps)
    torch.testing.assert_close(d.measure(x), F.avg_pool2d(x, 2))


@pytest.mark.parametrize("spec, message", [
    ("blur=-1", "blur σ must be ≥ 0"),
    ("mask=star:0.5", "unknown mask kind 'star'"),
    ("foo=1", "unknown degradation 'foo'"),
    ("noise=abc", "cannot read 'noise=abc'"),
    ("downsample=0", "positive integer, got 0"),
    ("mask=box:1.5", r"mask level must lie in \[0, 1\], got 1.5"),
])
def test_bad_specs_are_refused_with_a_reason(spec, message):
    """The error surfaces at the latest when the operator is built (see report)."""
    with pytest.raises(BadInputError, match=message):
        Degradation.parse(spec).operator(3)


def test_downsampling_by_a_non_divisor_names_the_size():
    x = torch.zeros(1, 1, 28, 28)
    with pytest.raises(BadInputError, match="28×28"):
        Downsample(3).forward(x)
    with pytest.raises(BadInputError, match="28×28"):
        Degradation.parse("blur=1,downsample=3").measure(x)


@pytest.mark.parametrize("spec", ["mask=star:0.5", "mask=box:1.5", "downsample=0", "mask=:0.5"])
def test_bad_specs_are_refused_when_parsed(spec):
    with pytest.raises(BadInputError):
        Degradation.parse(spec)


# --- operators as data --------------------------------------------------------------------


def test_every_operator_declares_its_parameters_as_rows_in_composition_order():
    from engine.core.operators import degradation_rows, operator_infos

    assert [info.name for info in operator_infos()] == ["blur", "downsample", "mask", "grayscale"]
    rows = degradation_rows()
    assert [r["name"] for r in rows] == ["noise", "blur", "downsample", "mask", "mask_level",
                                         "mask_seed", "grayscale"]
    assert all(r["help"] and "units" in r for r in rows)
    assert {r["name"]: r["units"] for r in rows if r["units"]} == {
        "noise": "image units", "blur": "px", "downsample": "×"}
    assert [r["name"] for r in rows if r["switch"]] == ["blur", "downsample", "mask", "grayscale"]
    assert Degradation().as_dict() == {r["name"]: r["default"] for r in rows}


def test_allowed_values_follow_the_image_shape():
    from engine.core.operators import allowed_values

    assert allowed_values((1, 28, 28)) == {"downsample": [1, 2, 4, 7, 14], "grayscale": [False]}
    assert allowed_values((3, 24, 36))["downsample"] == [1, 2, 3, 4, 6, 12]
    assert allowed_values((3, 24, 36))["grayscale"] == [False, True]


@pytest.fixture
def contrast_operator(monkeypatch):
    """A throw-away operator, registered for one test: A = c·I ('contrast'), off at c = 1."""
    from dataclasses import dataclass

    from engine.core.operators import OperatorInfo, degradation, register_operator
    from engine.core.registry import param

    @dataclass(frozen=True)
    class ContrastParams:
        contrast: float = param(1.0, lo=0.1, hi=2.0, units="×", help="contrast factor c of A = c·I")

    monkeypatch.setattr(degradation, "_OPERATORS", dict(degradation._OPERATORS))
    return register_operator(OperatorInfo("contrast", ContrastParams,
                                          lambda p, channels: Scale(p.contrast), order=35))


def test_a_registered_operator_joins_the_measurement_model(contrast_operator):
    from engine.core.operators import degradation_rows, measure_image

    d = Degradation.parse("blur=1,mask=box:0.5,contrast=0.5,noise=0.1")
    assert d.contrast == 0.5 and d.spec() == "blur=1,mask=box:0.5,contrast=0.5,noise=0.1"
    assert Degradation.parse(d.spec()) == d
    assert [type(op) for op in d.operator(1).ops] == [Blur, Mask, Scale]  # order 10 < 30 < 35
    assert "scale(c=0.5) ∘ mask" in d.operator(1).describe()
    row = next(r for r in degradation_rows() if r["name"] == "contrast")
    assert (row["operator"], row["units"], row["switch"]) == ("contrast", "×", True)
    x = rand(1, 1, SIZE, SIZE, seed=2)
    _, y = measure_image(Degradation(contrast=0.5), x, seed=0)
    torch.testing.assert_close(y, 0.5 * x)
    with pytest.raises(ValueError, match="reuses the field"):
        from dataclasses import replace

        from engine.core.operators import register_operator
        register_operator(replace(contrast_operator, name="contrast-2"))


def test_degradations_are_immutable_values():
    import copy
    import pickle

    d = Degradation.parse("blur=1.5,mask=random:0.3:7,noise=0.05")
    assert d.replace(noise=0.2).noise == 0.2 and d.noise == 0.05
    assert d.replace(noise=0.2) != d and hash(d.replace(blur=1.5)) == hash(d)
    assert pickle.loads(pickle.dumps(d)) == d == copy.deepcopy(d)
    with pytest.raises(AttributeError):
        d.blur = 2.0
    with pytest.raises(BadInputError, match="unknown degradation field"):
        Degradation(sharpen=1.0)
    assert Degradation.parse("mask=box").mask_level == 0.5  # later fields default
    assert Degradation.parse("mask=box:0.5").spec() == "mask=box:0.5"  # the level always written


def test_measure_image_draws_noise_by_the_measurement_seed():
    """The one measurement path: A x + σ_y ε with ε from the measurement seed's own stream
    (engine.core.rng.measurement_noise), as the job's y; the legacy scheme on request."""
    from engine.core.jobs import Job, Request
    from engine.core.operators import measure_image
    from engine.core.rng import SampleRNG, measurement_noise

    x = rand(1, 3, SIZE, SIZE, seed=4).float()
    d = Degradation.parse("blur=1,downsample=2,noise=0.1")
    op, y = measure_image(d, x, seed=7)
    expected = F.avg_pool2d(Blur(1.0).forward(x), 2) + 0.1 * measurement_noise(7, (3, 4, 4))
    torch.testing.assert_close(y, expected)
    _, legacy = measure_image(d, x, seed=7, scheme="v1")
    torch.testing.assert_close(legacy, F.avg_pool2d(Blur(1.0).forward(x), 2)
                               + 0.1 * SampleRNG(7, 1).randn(3, 4, 4))
    assert op.describe().startswith("downsample")
    job = Job(Request("pinv", image=x[0], degradation=d, measurement_seed=7))
    assert torch.equal(job.y_image, y[0])


def test_pinv_of_a_chain_is_a_product_not_the_minimum_norm_inverse():
    """`Compose.pinv`'s docstring: for blur → downsample → random mask the product of
    pseudo-inverses is 8.7× longer than the Moore–Penrose A⁺y (8×8, 3 channels)."""
    op, _, y = pair("compose-blur-down-mask", 3, seed=7)
    a = dense(op, (3, SIZE, SIZE))
    minimum_norm = y.flatten(1) @ torch.linalg.pinv(a, rtol=1e-3).T
    ratio = op.pinv(y).norm() / minimum_norm.norm()
    assert 8.6 < ratio < 8.8
