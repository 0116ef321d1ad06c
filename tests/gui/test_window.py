"""The main window with the real engine: previews, jobs on the worker thread, Stop, files."""

import threading

import numpy as np
import pytest
import torch

from engine.core.operators import Degradation
from engine.core.rng import measurement_noise
from studio.views.images import display_array


def expected_measurement(image, spec, seed):
    degradation = Degradation.parse(spec)
    x = image[None]
    shape = degradation.operator(x.shape[1]).out_shape(tuple(x.shape))
    return degradation.measure(x, measurement_noise(seed, shape[1:]))[0]


def start_long_job(window, qtbot, nfe: int, n: int, steps: int):
    """Start ancestral DDPM on the exact prior and return its ticket once it ran ``steps``."""
    window.choose_method("ddpm", "empirical-vp", {"nfe": nfe})
    window.state.degradation.set_spec("noise=1")
    window.state.method.n = n
    window.run_job()
    ticket = window.controller.current
    qtbot.waitUntil(lambda: ticket.steps >= steps, timeout=30_000)
    return ticket


def test_moving_a_slider_updates_the_degraded_canvas(window, qtbot):
    panel, canvas = window.degradation_panel, window.canvases["degraded"]
    window.state.degradation.set_spec("noise=0.05")
    before = canvas.array.copy()
    panel.blur.setValue(2.0)  # as a drag does: valueChanged on the GUI thread
    assert window.state.degradation.blur == 2.0
    expected = display_array(expected_measurement(window.working, "blur=2,noise=0.05", 0))
    np.testing.assert_array_equal(canvas.array, expected)
    assert not np.array_equal(canvas.array, before)
    from engine.evaluation.metrics import psnr

    assert canvas.badge.text() == "PSNR …"  # computed once the slider rests
    qtbot.waitUntil(lambda: "dB" in canvas.badge.text(), timeout=2000)
    y = expected_measurement(window.working, "blur=2,noise=0.05", 0).clamp(0, 1)
    assert canvas.badge.text() == f"y: PSNR {float(psnr(y, window.working)):.1f} dB"
    panel.downsample.setCurrentIndex(panel.downsample.findData(2))
    assert canvas.array.shape == (14, 14)  # shown at its own resolution on the same square
    qtbot.waitUntil(lambda: canvas.badge.text().startswith("A⁺y: PSNR"), timeout=2000)
    assert canvas.pixel_at(27.5, 27.5) == (13, 13)


def test_a_job_runs_on_the_worker_thread_and_fills_the_views(window, qtbot, monkeypatch, run_to_end):
    from engine.core import jobs

    threads = []
    original = jobs.Job.__init__
    monkeypatch.setattr(jobs.Job, "__init__",
                        lambda self, request: (threads.append(threading.get_ident()),
                                               original(self, request))[1])
    window.choose_method("ddim", "empirical-vp", {"nfe": 10, "k": 1.0})
    window.state.degradation.set_spec("noise=1")
    window.state.method.n = 5
    outcome = run_to_end()
    assert threads and threads[0] != threading.get_ident()
    assert outcome.result.samples.shape == (5, 1, 28, 28)
    assert window.diversity.count == 5
    assert len(window.trajectory.frames["reverse"]) == len(outcome.result.trajectory) == 10
    assert len(window.trajectory.frames["forward"]) > 2  # x0 → x_T under the VP schedule
    np.testing.assert_array_equal(window.canvases["result"].array,
                                  display_array(outcome.result.samples[0]))
    assert "PSNR" in window.canvases["result"].badge.text()
    window.diversity.tiles.setCurrentRow(3)  # click a tile: inspect that sample
    np.testing.assert_array_equal(window.canvases["result"].array,
                                  display_array(outcome.result.samples[3]))


def test_latent_slider_moves_each_sample_to_the_z_of_another_seed(window, run_to_end):
    """Deterministic DDIM starts from y topped up with its z to the path's noise level and
    then adds no noise: at mix 1 every sample equals the run with seed z seed + k.
    Largest |moved − own| over 10 seed pairs (demo 0): 0.024 ± 0.0026 (bound 0.01: 5.5 sd)."""
    panel = window.method_panel
    window.choose_method("tikhonov", None, {})
    assert panel.latent_box.isHidden()  # a baseline has no latent
    window.choose_method("ddim", "empirical-soft-blur", {"nfe": 10, "k": 0.0})
    assert not panel.latent_box.isHidden()
    window.state.degradation.set_spec("blur=2,noise=0.01")
    window.state.method.n, window.state.method.seed = 2, 3
    own = run_to_end().result.samples
    panel.latent_seed.setValue(11)
    panel.latent_mix.setValue(1.0)
    moved = run_to_end().result.samples
    window.state.method.latent_mix, window.state.method.seed = 0.0, 11
    other = run_to_end().result.samples
    torch.testing.assert_close(moved, other, atol=1e-5, rtol=0)
    assert float((moved - own).abs().max()) > 0.01  # z matters (a little: blur 2 leaves few images plausible)


def test_stop_cancels_a_long_job_within_one_step(window, qtbot):
    ticket = start_long_job(window, qtbot, nfe=1000, n=16, steps=3)
    with qtbot.waitSignal(window.controller.cancelled, timeout=10_000):
        window.controller.stop()
        at_stop = ticket.steps
    assert window.controller.wait(10_000)
    assert ticket.steps - at_stop <= 1
    assert ticket.steps < 100  # far from the ≈ 500 steps of the whole run
    assert window.outcome is None


def test_stop_and_keep_returns_the_current_estimate(window, qtbot):
    ticket = start_long_job(window, qtbot, nfe=1000, n=4, steps=3)
    with qtbot.waitSignal(window.controller.finished, timeout=10_000) as blocker:
        window.controller.stop(keep=True)
    outcome = blocker.args[1]
    assert outcome.result.stopped
    assert outcome.result.samples.shape == (4, 1, 28, 28)
    assert window.diversity.count == 4


def test_a_bad_file_shows_a_message_and_keeps_the_current_image(window, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    before, clean = window.state.source.image, window.canvases["clean"].array.copy()
    assert window.open_path(str(bad)) is False
    assert window.messages.level == "error"
    assert "broken.png" in window.messages.text()
    assert window.state.source.image is before
    np.testing.assert_array_equal(window.canvases["clean"].array, clean)


def test_opening_a_colour_image_converts_it_for_the_model_and_says_so(window, tmp_path):
    from PIL import Image

    path = tmp_path / "colour.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (56, 56, 3), dtype=np.uint8)).save(path)
    window.choose_method("ddim", "empirical-vp", {})
    assert window.open_path(str(path))
    assert tuple(window.working.shape) == (1, 28, 28)
    assert window.source_panel.note.isVisibleTo(window) and window.source_panel.note.text()
    window.choose_method("tikhonov", None, {})  # no prior: the image is used as it is
    assert tuple(window.working.shape) == (3, 56, 56)
    assert window.degradation_panel.grayscale.isEnabled()


def test_exported_png_recipe_reopens_to_the_same_settings(window, qtbot, tmp_path, run_to_end):
    window.choose_method("tikhonov", None, {"alpha": 0.3, "iterations": 20})
    window.state.degradation.set_spec("blur=1.2,noise=0.03")
    window.state.degradation.measurement_seed = 5
    window.state.method.seed, window.state.method.n = 9, 2
    window.choose_demo(7)
    outcome = run_to_end()
    path = tmp_path / "grid.png"
    assert window.export("grid", str(path))
    settings = window.state.to_recipe()

    window.choose_method("pinv", None, {})
    window.state.degradation.set_spec("noise=0.2")
    window.state.method.seed = 0
    window.choose_demo(1)
    assert window.open_recipe(str(path))
    restored = window.state.to_recipe()
    assert {k: restored[k] for k in settings if k != "params"} == {k: settings[k] for k in settings if k != "params"}
    assert restored["params"] == outcome.result.recipe["params"]  # defaults filled in
    assert torch.equal(window.state.source.image, window.catalog.demo_images[7])
    assert window.degradation_panel.blur.value() == pytest.approx(1.2)
    assert window.method_panel.form.values()["alpha"] == pytest.approx(0.3)


def test_parameter_forms_are_generated_from_the_registry(window):
    from engine.core.registry import describe_params

    for name, info in window.catalog.methods.items():
        model = (window.catalog.image_models_for(name) or [None])[0]
        window.choose_method(name, model, {})
        rows = describe_params(info.params)
        assert set(window.method_panel.form.editors) == {r["name"] for r in rows}
        for row in rows:
            expected = pytest.approx(row["default"]) if isinstance(row["default"], float) else row["default"]
            assert window.method_panel.form.values()[row["name"]] == expected
            if row["help"]:
                assert row["help"] in window.method_panel.form.editor(row["name"]).toolTip()
    window.choose_method("tikhonov", None, {})
    window.method_panel.form.editor("iterations").setValue(7)
    assert window.state.method.params == {"iterations": 7}


def test_canvases_share_zoom_and_report_pixels(window):
    clean, result = window.canvases["clean"], window.canvases["result"]
    clean.box.setRange(xRange=(3, 9), yRange=(3, 9), padding=0)
    np.testing.assert_allclose(result.box.viewRange(), clean.box.viewRange(), atol=0.05)  # ≤ a pixel of screen
    assert result.box.viewRange()[0][1] - result.box.viewRange()[0][0] < 10  # zoomed in, not the whole 28
    x = window.working
    assert clean.readout(5.5, 2.5) == f"clean (5, 2): {round(float(x[0, 2, 5]) * 255) / 255:.3f}"


def test_engine_errors_reach_the_message_bar(window, qtbot):
    window.choose_method("ddim", "empirical-vp", {"nfe": 5})
    window.state.degradation.set_spec("blur=2,noise=0.05")  # not on a VP model's path
    with qtbot.waitSignal(window.controller.failed, timeout=30_000):
        window.run_job()
    assert window.messages.level == "error"
    assert "ddim@empirical-vp" in window.messages.text()
    assert window.outcome is None


def test_dropping_a_file_opens_it(window, tmp_path):
    from PIL import Image
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDropEvent

    path = tmp_path / "dropped.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.state.source.name == str(path)
    assert window.canvases["clean"].array[0, 0] == 200


def test_drawing_a_source_image_from_a_model(window, qtbot):
    with qtbot.waitSignal(window.state.source.events.name, timeout=30_000):
        window.draw_source("empirical-vp", 4)
    assert window.state.source.name.startswith("sample:") and "seed=4" in window.state.source.name
    assert tuple(window.state.source.image.shape) == (1, 28, 28)


def test_settings_restore_the_last_session(qtbot, tmp_path):
    from PySide6.QtCore import QSettings

    from studio.main_window import MainWindow

    def open_window():
        w = MainWindow(QSettings(str(tmp_path / "studio.ini"), QSettings.Format.IniFormat))
        qtbot.addWidget(w)
        w.load_engine()
        return w

    first = open_window()
    first.method_panel.live.setChecked(False)
    first.choose_method("tikhonov", None, {"alpha": 0.7})
    first.state.degradation.set_spec("blur=2.5,noise=0.1")
    first.choose_demo(12)
    first.save_settings()
    second = open_window()
    assert second.state.to_recipe() == first.state.to_recipe()
    assert not second.method_panel.live.isChecked()


def test_compare_grid_runs_every_cell_and_marks_axes_a_method_lacks(window, qtbot):
    window.choose_method("ddim", "empirical-vp", {"k": 1.0})
    window.state.degradation.set_spec("noise=0.5")
    compare = window.compare
    with qtbot.waitSignal(window.controller.finished, timeout=60_000):
        compare.run("nfe", [2, 4], "method", ["ddim@empirical-vp", "tikhonov"])
    assert len(compare.results) == 4
    ok = [compare.results[(0, c)] for c in range(2)]
    assert all(cell.thumbnail.shape == (28, 28, 1) and cell.psnr > 5 for cell in ok)
    assert [cell.nfe for cell in ok] == [2, 4]
    assert compare.results[(1, 0)].error == ""  # tikhonov takes no NFE: n/a, not an error
    assert "nfe n/a" in compare.grid.itemAtPosition(2, 1).widget().toolTip()
    assert len(compare.plot.getPlotItem().listDataItems()) == 2  # one line per method


def test_playground_diffuses_and_samples_particles(window, qtbot):
    """Median |radius − 2| of 64 DDIM particles at 10 NFE, over 10 seeds: 0.076 ± 0.014
    (bound 0.3: 16 sd)."""
    view = window.playground
    assert view.model.currentText() == "ring8"
    with qtbot.waitSignal(window.controller.finished, timeout=60_000) as blocker:
        view.run("ring8", "ddim", {"nfe": 10}, 64, 0)
    result = blocker.args[1]
    assert result.samples.shape == (64, 2, 1, 1)
    x, y = view.scatter.getData()
    assert len(x) == 64
    radius = np.hypot(x, y)  # the ring has radius 2: sampled particles land near it
    assert np.median(np.abs(radius - 2.0)) < 0.3
    assert view.density.image is not None and view.density.image.shape == (120, 120)


def test_before_after_split_shows_clean_left_of_the_line(window, qtbot, run_to_end):
    window.choose_method("tikhonov", None, {})
    window.state.degradation.set_spec("blur=2,noise=0.05")
    run_to_end()
    canvas = window.canvases["result"]
    window.split.setChecked(True)
    canvas.split_line.setValue(7.0)  # a quarter of the 28-pixel width
    shown = canvas.before_item.image
    assert shown.shape == (28, 7)
    np.testing.assert_array_equal(shown, display_array(window.working)[:, :7])
    window.split.setChecked(False)
    assert canvas.before is None


def test_trajectory_and_metrics_exports(window, qtbot, tmp_path, run_to_end):
    import json

    from PIL import Image

    window.choose_method("ddim", "empirical-vp", {"nfe": 6, "k": 1.0})
    window.state.degradation.set_spec("noise=1")
    window.state.method.n = 3
    outcome = run_to_end()
    assert window.export("trajectory", str(tmp_path / "path.gif"))
    with Image.open(tmp_path / "path.gif") as gif:
        assert gif.n_frames == len(outcome.result.trajectory) == 6
        assert gif.width > gif.height  # x_t and x̂0 side by side
    assert window.export("metrics", str(tmp_path / "metrics.json"))
    rows = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["seed"] for r in rows] == [0, 1, 2]
    assert [r["psnr"] for r in rows] == pytest.approx(outcome.sample_psnr)
    assert not window.export("metrics", str(tmp_path / "metrics.xlsx"))  # refused, said why
    assert window.messages.level == "error" and ".csv" in window.messages.text()


def test_pause_holds_the_job_between_steps_and_resume_finishes_it(window, qtbot):
    ticket = start_long_job(window, qtbot, nfe=200, n=2, steps=2)
    with qtbot.waitSignal(window.controller.paused_changed, timeout=10_000) as paused:
        window.method_panel.pause_button.click()
    assert paused.args == [True] and window.method_panel.pause_button.text() == "Resume"
    held = ticket.steps
    qtbot.wait(150)
    assert ticket.steps == held  # a paused job does not step
    with qtbot.waitSignal(window.controller.finished, timeout=60_000) as done:
        window.method_panel.pause_button.click()
    assert not done.args[1].result.stopped
    assert ticket.steps > held


def test_the_draw_picker_offers_models_of_the_demo_images_first(window):
    """The default screen shows Fashion-MNIST; drawing from the 64×64 RGB photo prior
    first would hand a new user a tile of colour noise (it was first alphabetically)."""
    first = window.source_panel.draw_model.itemText(0)
    assert window.catalog.models[first].shape == tuple(window.catalog.demo_images[0].shape)
    assert first == window.catalog.default_choice()[1]  # vp, not the weak rgm-d (alphabetical)
    names = [window.source_panel.draw_model.itemText(i) for i in range(window.source_panel.draw_model.count())]
    assert "photo" in names and names.index("photo") > names.index(first)
