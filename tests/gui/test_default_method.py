"""Issue 12, item 6: the studio's default method restores every degradation its sliders
make (the default screen, driven offscreen through the real window and engine thread)."""

import itertools

import pytest

from engine.core.operators import Degradation, measure_image
from engine.evaluation.metrics import psnr


def degraded_psnr(window) -> float:
    """The degraded canvas's figure: PSNR of y (of A⁺y when y is smaller) against the image."""
    x = window.working[None]
    op, y = measure_image(window.state.degradation.degradation(), x, window.state.degradation.measurement_seed)
    shown = y if y.shape == x.shape else op.pinv(y)
    return float(psnr(shown.clamp(0, 1), x))


def test_no_slider_position_is_refused_by_the_default(window):
    """Every value each control offers on the default image, alone and all at once at
    their extremes, is one the default method can restore (no amber "cannot restore")."""
    method, model, spec, _ = window.catalog.default_choice()
    panel = window.degradation_panel
    assert (method, model) == ("pnp-drs", "vp") and not panel.grayscale.isEnabled()  # a 1-channel image
    factors = [panel.downsample.itemData(k) for k in range(panel.downsample.count())]
    kinds = [panel.editor("mask").itemData(k) for k in range(panel.editor("mask").count())]
    assert factors == [1, 2, 4, 7, 14] and set(kinds) == {"", "box", "frame", "random", "half"}
    alone = [f"noise={v}" for v in (0, 0.01, 0.5, 2)] + [f"blur={v},noise=0.2" for v in (0.3, 5)] + \
        [f"downsample={f},noise=0.2" for f in factors[1:]] + \
        [f"mask={k}:{level},noise=0.2" for k in kinds[1:] for level in (0.1, 1.0)]
    combined = [f"blur={b},downsample={f},mask={k}:0.9,noise={n}"
                for b, f, k, n in itertools.product((0.5, 5), (2, 14), kinds[1:], (0, 2))]
    problem = window.catalog.verdicts  # the pickers' own question
    refused = {s: problem(Degradation.parse(s))(method, model) for s in alone + combined}
    assert {s: r for s, r in refused.items() if r} == {}


@pytest.mark.parametrize("moves", [
    {},                                   # the default screen as it opens: noise 0.2
    {"blur": 1.5},
    {"downsample": 2},
    {"mask": "box"},
    {"mask": "random"},
    {"noise": 0.05, "blur": 1.0, "downsample": 2},  # a composition: CG prox
    {"mask": "box", "blur": 1.0},
])
def test_each_slider_on_the_default_restores_above_the_degraded_input(window, run_to_end, moves):
    """Demo image 0, measurement seed 0, seeds 0–1 (2 samples): each slider moved on the
    default screen gives a result, no error, and every sample above the degraded PSNR.
    Measured (dB, degraded → the two samples): noise 0.2 15.7 → 20.1, 20.4; blur 1.5
    13.2 → 20.7, 22.1; ×2 14.6 → 20.6, 21.5; box 9.3 → 19.1, 20.8; random 8.8 → 20.3,
    20.8; blur 1 + ×2 at noise 0.05 4.8 (A⁺y) → 22.6, 23.3; box + blur 1 9.0 → 20.5, 22.0.
    The bound (2.5 dB above) is ≥ 4 sample spreads below the smallest gain (4.4 dB)."""
    window.apply_defaults()
    panel = window.degradation_panel
    for name, value in moves.items():
        editor = panel.editor(name)
        if hasattr(editor, "findData"):
            editor.setCurrentIndex(editor.findData(value))
        else:
            editor.setValue(value)
    window.state.method.n = 2
    assert window.method_panel.note.isHidden()  # no "cannot restore" line
    outcome = run_to_end()
    assert window.messages.level != "error"
    before = degraded_psnr(window)
    assert len(outcome.sample_psnr) == 2
    assert min(outcome.sample_psnr) > before + 2.5, (before, outcome.sample_psnr)
