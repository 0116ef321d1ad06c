"""Fine-grained events and the generated degradation panel, on the real window."""

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from studio.views.images import display_array


@pytest.fixture
def preview_count(monkeypatch):
    """How often the engine's measurement function ran for a preview on the GUI thread."""
    import threading

    from engine.core.operators import degradation

    calls = []
    original = degradation.measure_image
    gui = threading.get_ident()

    def counted(*args, **kwargs):
        if threading.get_ident() == gui:  # the preview, not a job on the engine thread
            calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(degradation, "measure_image", counted)
    return calls


def test_latent_slider_moves_do_not_recompute_the_preview(window, qtbot, preview_count):
    window.choose_method("ddim", "empirical-vp", {"nfe": 10})
    window.state.degradation.set_spec("noise=0.5")
    panel = window.method_panel
    del preview_count[:]
    for k in range(1, 6):
        panel.latent_mix.setValue(0.1 * k)
    panel.seed.setValue(3)
    panel.form.editor("nfe").setValue(12)
    assert window.state.method.latent_mix == pytest.approx(0.5)
    assert len(preview_count) == 0
    window.degradation_panel.noise.setValue(0.25)
    assert len(preview_count) == 1
    canvas = window.canvases["degraded"]
    qtbot.waitUntil(lambda: "dB" in canvas.badge.text(), timeout=2000)  # after the debounce
    assert len(preview_count) == 1


def test_changing_the_model_recomputes_the_preview_only_if_the_image_changes(window, preview_count, tmp_path):
    from PIL import Image

    path = tmp_path / "colour.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (56, 56, 3), dtype=np.uint8)).save(path)
    window.choose_method("tikhonov", None, {})
    assert window.open_path(str(path))
    del preview_count[:]
    window.choose_method("pinv", None, {})  # no model either way: same working image
    assert len(preview_count) == 0
    window.choose_method("ddim", "empirical-vp", {})  # the model needs 1×28×28
    assert len(preview_count) == 1 and tuple(window.working.shape) == (1, 28, 28)


def test_panel_follows_state_changes_field_by_field(window):
    panel, state = window.degradation_panel, window.state.degradation
    state.set_spec("noise=0.1")
    assert not panel.mask_level.isEnabled()  # the mask is off: its level means nothing
    state.mask = "random"
    assert panel.editor("mask").currentData() == "random" and panel.mask_level.isEnabled()
    state.mask_level = 0.3
    assert panel.mask_level.value() == pytest.approx(0.3)
    panel.blur.setValue(1.25)
    assert state.blur == 1.25 and state.operators["blur"] == 1.25
    assert state.spec() == "blur=1.25,mask=random:0.3,noise=0.1"
    assert [panel.downsample.itemData(k) for k in range(panel.downsample.count())] == [1, 2, 4, 7, 14]
    state.downsample = 3  # from a recipe: not a divisor of 28, kept and marked
    assert panel.downsample.currentData() == 3 and "not for 28×28" in panel.downsample.currentText()
    assert "invalid" in window.canvases["degraded"].badge.text()


def test_a_live_run_starts_on_the_first_slider_move(window, qtbot):
    """Live re-runs are throttled, not debounced: a fast method follows a dragged slider."""
    from studio.preview import LIVE_INTERVAL_MS

    window.choose_method("pinv", None, {})
    window.method_panel.live.setChecked(True)  # runs at once
    qtbot.waitUntil(lambda: window.controller.current is None, timeout=30_000)
    qtbot.wait(2 * LIVE_INTERVAL_MS)  # the throttle's window has passed
    window.degradation_panel.blur.setValue(1.5)
    current = window.controller.current
    assert current is not None and current.purpose == "restore"
    assert current.request.degradation.blur == 1.5
    window.method_panel.live.setChecked(False)


def test_a_new_operator_gets_its_controls_in_the_real_panel(qtbot, monkeypatch):
    """A throw-away operator registered here (no GUI file touched) appears in the panel,
    drives the state, the preview, the formula line and the job."""
    from engine.core.operators import Degradation, OperatorInfo, Scale, degradation, register_operator
    from engine.core.registry import param
    from studio.main_window import MainWindow

    @dataclass(frozen=True)
    class GainParams:
        gain: float = param(1.0, lo=0.1, hi=2.0, units="×", help="gain c of A = c·I (1 = off)")

    monkeypatch.setattr(degradation, "_OPERATORS", dict(degradation._OPERATORS))
    register_operator(OperatorInfo("gain", GainParams, lambda p, channels: Scale(p.gain), order=50))
    window = MainWindow(settings=None)
    qtbot.addWidget(window)
    window.method_panel.live.setChecked(False)
    window.load_engine()
    window.choose_method("pinv", None, {})
    window.state.degradation.set_spec("blur=1,noise=0")
    editor = window.degradation_panel.editor("gain")
    assert "gain c of A" in editor.toolTip()
    editor.setValue(0.5)
    assert window.state.degradation.gain == 0.5
    assert window.state.degradation.spec() == "blur=1,gain=0.5"
    expected = Degradation(blur=1.0, gain=0.5).measure(window.working[None])[0]
    np.testing.assert_array_equal(window.canvases["degraded"].array, display_array(expected))
    qtbot.waitUntil(lambda: "scale(c=0.5) ∘ blur" in window.degradation_panel.description.text(),
                    timeout=2000)  # the formula line follows once the slider rests
    with qtbot.waitSignal(window.controller.finished, timeout=30_000) as blocker:
        window.run_job()
    result = blocker.args[1].result
    assert result.recipe["degradation"] == "blur=1,gain=0.5"
    torch.testing.assert_close(result.measurement, expected)
    window.controller.shutdown()


def test_frames_show_the_jobs_own_thumbnails():
    """Thumbnails are made once per step, by the job; the GUI's frames reuse them."""
    from engine.core.jobs import Request
    from engine.core.operators import Degradation
    from engine.io.data import demo_images
    from studio.tasks import Frame, Ticket, job_events

    request = Request("ddim@empirical-vp", image=demo_images()[0][3], params={"nfe": 4},
                      degradation=Degradation(noise=0.5), n=2)
    events = job_events(Ticket(1, "restore", "test", request))
    frames = []
    try:
        while True:
            event = next(events)
            if isinstance(event, Frame):
                frames.append(event)
    except StopIteration as done:
        outcome = done.value
    trajectory = outcome.result.trajectory
    assert len(trajectory) == 4 and frames
    shown = [(x_t, x0) for _, x_t, x0 in trajectory]
    assert all(any(f.x_t is x_t and f.x0_hat is x0 for x_t, x0 in shown) for f in frames)


def test_the_studio_and_the_job_write_the_same_recipe():
    from engine.core.jobs import Job
    from studio.state import StudioState, load_source

    state = StudioState()
    state.set_source(load_source("demo:2"), "demo:2")
    state.degradation.set_spec("downsample=2,noise=0.1")
    state.method.method, state.method.params, state.method.n = "tikhonov", {"alpha": 0.5}, 2
    settings = state.to_recipe()
    job = Job(state.request()).recipe()
    assert set(job) - set(settings) == {"rng_device", "dtype", "versions"}
    same = {"method", "model", "seed", "n", "measurement_seed", "degradation", "source", "device",
            "latent_mix"}
    assert {k: job[k] for k in same} == {k: settings[k] for k in same}
    assert job["params"]["alpha"] == settings["params"]["alpha"] == 0.5


def test_a_young_live_run_finishes_and_the_latest_settings_follow(window, qtbot, monkeypatch):
    """While a slider is dragged, a live run is not cancelled by the next move (unless it is
    older than the patience); the settings of the last move run right after it."""
    from studio import preview

    monkeypatch.setattr(preview, "LIVE_PATIENCE_MS", 60_000)  # every run counts as young
    window.choose_method("tikhonov", None, {})
    window.method_panel.live.setChecked(True)
    qtbot.waitUntil(lambda: window.controller.current is None, timeout=30_000)
    cancelled, finished = [], []
    window.controller.cancelled.connect(cancelled.append)
    window.controller.finished.connect(lambda ticket, outcome: finished.append(outcome))
    for k, value in enumerate([0.6, 0.8, 1.0, 1.2]):
        window.degradation_panel.blur.setValue(value)
        qtbot.wait(2 * preview.LIVE_INTERVAL_MS)
    qtbot.waitUntil(lambda: finished and finished[-1].result.recipe["degradation"].startswith("blur=1.2"),
                    timeout=30_000)
    assert cancelled == []
    window.method_panel.live.setChecked(False)



HEAP_REUSE = """
import ctypes, resource, sys
import torch  # (its import must not undo it)
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
if sys.argv[1] == "keep":
    from studio.preview import keep_freed_buffers
    assert keep_freed_buffers()


def cycle(size=20 << 20):  # a 20 MB buffer, written and freed
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    libc.free(p)


cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
cycle()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_the_studio_heap_keeps_freed_buffers():
    """`keep_freed_buffers`: a freed 20 MB buffer is reused, not handed back to the
    kernel and faulted in again (5120 pages) as glibc's adaptive default does."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    faults = {mode: int(subprocess.run([sys.executable, "-c", HEAP_REUSE, mode], cwd=root,
                                       capture_output=True, text=True, check=True).stdout)
              for mode in ("keep", "default")}
    assert faults["keep"] < 100 and faults["default"] > 4000, faults
