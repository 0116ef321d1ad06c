"""Issue 17, studio: every failure reaches the user as a short message; nothing crashes,
hangs or changes half-way. One test per finding (each failed on the code before the
fix); the random-input drive of the real window is marked ``reliability``."""

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine.core.step import BadInputError

LONG = 2_000_000


# -- item 1: long messages are cut; the whole text stays one click away ------------------

def test_a_two_megabyte_message_is_cut_and_kept_in_the_details(qtbot):
    from studio.views.messages import MAX_CHARS, MessageBar

    bar = MessageBar()
    qtbot.addWidget(bar)
    bar.error("A" * LONG)
    assert bar.isVisible() and len(bar.text()) < MAX_CHARS + 80
    assert bar.text().endswith("see Details)") and bar.details.isVisible()
    bar.show_details()
    assert bar.details_view.view.toPlainText() == "A" * LONG
    bar.error("short")
    assert bar.text() == "short" and not bar.details.isVisible()
    bar.error("line\n" * 1000)
    assert bar.text().count("\n") < 10


def test_a_recipe_whose_source_is_two_megabytes_long_gives_a_short_message(window, tmp_path):
    from engine.io.export import save_grid

    recipe = {**window.state.to_recipe(), "source": "x" * LONG}
    save_grid(tmp_path / "r.png", torch.rand(1, 1, 28, 28), recipe)
    before = window.state.source.image
    assert window.open_recipe(str(tmp_path / "r.png"))
    assert window.messages.level == "warning" and "not available" in window.messages.text()
    assert len(window.messages.text()) < 1000
    assert window.state.source.image is before


# -- item 2: every exception of a job ends it with a message -------------------------------

def test_a_method_raising_runtime_error_ends_the_job_with_a_message(window, qtbot, monkeypatch):
    from engine.core import registry

    def explode(prior, measurement, params, rng):
        raise RuntimeError("CUDA out of memory (simulated)")
        yield

    info = registry.get("tikhonov")
    monkeypatch.setitem(registry._METHODS, "tikhonov", dataclasses.replace(info, run=explode))
    window.choose_method("tikhonov", None, {})
    with qtbot.waitSignal(window.controller.failed, timeout=60_000) as failed:
        window.run_job()
    assert "RuntimeError: CUDA out of memory (simulated)" in failed.args[1]
    qtbot.waitUntil(lambda: window.controller.current is None, timeout=10_000)
    assert not window.stop_action.isEnabled() and not window.method_panel.stop_button.isEnabled()
    assert "CUDA out of memory" in window.messages.text()
    window.choose_method("pinv", None, {})  # the engine thread is free for the next job
    with qtbot.waitSignal(window.controller.finished, timeout=60_000):
        window.run_job()


def test_a_bogus_device_ends_the_job_with_a_message(window, qtbot):
    window.choose_method("tikhonov", None, {})
    window.state.method.device = "bogus"
    with qtbot.waitSignal(window.controller.failed, timeout=60_000) as failed:
        window.run_job()
    assert "unknown device 'bogus'" in failed.args[1]
    qtbot.waitUntil(lambda: not window.stop_action.isEnabled(), timeout=10_000)


def test_the_failure_message_does_not_repeat_the_method_name():
    from engine.core.step import DivergenceError
    from studio.tasks import Ticket
    from studio.worker import failure_message

    ticket = Ticket(1, "restore", "tikhonov")
    assert failure_message(ticket, DivergenceError("tikhonov: diverged")) == "diverged"
    ticket = Ticket(1, "restore", "ddim@vp")
    assert failure_message(ticket, BadInputError("ddim: bad")) == "bad"
    assert failure_message(ticket, BadInputError("vp: bad")) == "vp: bad"


def test_a_screenshot_never_truncates_an_existing_file(window, tmp_path):
    """Found by the random-input drive: "Save screenshot" onto recipe.json emptied it."""
    recipe = tmp_path / "recipe.json"
    recipe.write_text('{"method": "pinv"}')
    assert not window.save_screenshot(str(recipe))
    assert recipe.read_text() == '{"method": "pinv"}' and ".png" in window.messages.text()
    assert window.save_screenshot(str(tmp_path / "shot.png"))
    with Image.open(tmp_path / "shot.png") as image:
        assert image.format == "PNG" and image.width > 100


# -- item 4: a recipe is validated whole, then applied or not at all -------------------------

def configured_state():
    from studio.state import StudioState, load_source

    state = StudioState()
    state.set_source(load_source("demo:5"), "demo:5")
    state.degradation.set_spec("blur=1.5,noise=0.05")
    state.method.method, state.method.params = "tikhonov", {"alpha": 0.2}
    state.method.seed, state.method.n = 3, 4
    return state


@pytest.mark.parametrize("change,reason", [
    ({"seed": float("inf")}, "seed must be an integer"),
    ({"seed": 1e30}, "seed must be an integer"),
    ({"seed": -1}, "seed must be an integer"),
    ({"seed": "7"}, "seed must be an integer"),
    ({"n": 10**9}, "n must be an integer in [1, 64]"),
    ({"n": 0}, "n must be an integer"),
    ({"measurement_seed": 2**40}, "measurement_seed"),
    ({"latent_mix": 2.0}, "latent_mix"),
    ({"degradation": 5}, "degradation must be a string"),
    ({"degradation": "blur=-1"}, "blur"),
    ({"params": {"alpha": -5}}, "outside"),
    ({"params": {"nosuch": 1}}, "unknown parameter"),
    ({"params": [1, 2]}, "params must be an object"),
    ({"method": "ddim", "model": "nosuch", "params": {}}, "'nosuch' is not available"),
    ({"method": "rgm", "model": "vp", "params": {}}, "rgm needs a model"),
    ({"device": "bogus"}, "unknown device"),
    ({"device": 3}, "device must be a string"),
    ({"measurement_noise": "v9"}, "measurement-noise scheme"),
])
def test_a_bad_recipe_value_is_refused_and_nothing_changes(change, reason):
    state = configured_state()
    before = state.to_recipe()
    with pytest.raises(BadInputError, match=reason.replace("[", r"\[").replace("]", r"\]")
                       .replace("(", r"\(")):
        state.apply_recipe({**before, "seed": 99, "n": 2, **change})
    assert state.to_recipe() == before


def test_a_recipe_whose_source_file_is_truncated_changes_nothing(tmp_path):
    broken = tmp_path / "broken.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), np.uint8)).save(broken)
    broken.write_bytes(broken.read_bytes()[:400])
    state = configured_state()
    before = state.to_recipe()
    with pytest.raises(BadInputError, match="broken.png"):
        state.apply_recipe({**before, "seed": 99, "degradation": "noise=0.3", "source": str(broken)})
    assert state.to_recipe() == before


def test_a_recipe_nested_too_deeply_is_a_message(window, tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    seed = window.state.method.seed
    assert not window.open_recipe(str(deep))
    assert window.messages.level == "error" and "nested too deeply" in window.messages.text()
    assert window.state.method.seed == seed


def test_a_valid_recipe_keeps_its_typed_parameters():
    state = configured_state()
    state.apply_recipe({**state.to_recipe(), "params": {"alpha": "0.5", "iterations": 7.0}, "n": 8.0})
    assert state.method.params == {"alpha": 0.5, "iterations": 7} and state.method.n == 8


# -- item 9: settings in tests ---------------------------------------------------------------

def test_the_test_session_keeps_settings_out_of_the_users_home():
    from studio.app import settings_store

    store = settings_store()
    assert store.fileName() == os.environ["RESTORATION_STUDIO_SETTINGS"]
    assert not store.fileName().startswith(str(Path.home() / ".config"))
    assert settings_store(fresh=True) is None


# -- the excepthook is observable --------------------------------------------------------------

@pytest.mark.qt_no_exception_capture
def test_the_excepthook_counts_and_signals_every_exception(window, qtbot, capsys):
    import sys

    from PySide6.QtCore import QTimer

    from studio.app import install_excepthook

    saved = sys.excepthook
    try:
        hook = install_excepthook(window)
        with qtbot.waitSignal(hook.raised, timeout=5_000) as raised:
            QTimer.singleShot(0, lambda: 1 / 0)
    finally:
        sys.excepthook = saved
    assert hook.count == 1 and raised.args == ["ZeroDivisionError: division by zero"]
    assert "Internal error (ZeroDivisionError" in window.messages.text()
    assert "Traceback" in capsys.readouterr().err


# -- the random-input drive (reliability suite) -------------------------------------------------

ACTIONS = 300


def hostile_files(folder: Path) -> list[str]:
    """Files the patched file dialogs hand out: bad images, bad recipes, good ones."""
    from engine.io.export import save_grid

    files = {"empty.png": b"", "text.png": b"not an image\n", "deep.json": b"[" * 50_000}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    Image.fromarray((np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)).save(folder / "ok.png")
    truncated = (folder / "ok.png").read_bytes()[:200]
    (folder / "truncated.png").write_bytes(truncated)
    Image.fromarray(np.full((4, 4), np.nan, np.float32), mode="F").save(folder / "nan.tif")
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "one.png")
    (folder / "recipe.json").write_text(json.dumps({"method": "pinv", "seed": 1e30, "n": 10**9}))
    save_grid(folder / "long.png", torch.rand(1, 1, 28, 28),
              {"method": "pinv", "source": "s" * LONG, "degradation": 5})
    save_grid(folder / "good.png", torch.rand(1, 1, 28, 28),
              {"method": "tikhonov", "source": "demo:3", "degradation": "blur=1,noise=0.05", "n": 2})
    return [str(p) for p in sorted(folder.iterdir())] + [str(folder / "out.png"), str(folder / "o.txt"),
                                                        str(folder / "missing" / "x.csv"), ""]


def menu_actions(menu) -> list:
    """Every command of a menu bar or menu (submenus opened), Quit left out."""
    out = []
    for action in menu.actions():
        if action.menu():
            out += menu_actions(action.menu())
        elif action.text() and "Quit" not in action.text():
            out.append(action)
    return out


@pytest.mark.reliability
@pytest.mark.qt_no_exception_capture
def test_random_input_raises_nothing(window, qtbot, tmp_path, monkeypatch):
    """ACTIONS random actions on the real window (seeded): buttons, spin boxes, combos,
    menus, tabs, the Live switch, file dialogs answering with hostile files. The app's
    own excepthook counts what reaches the event loop: zero allowed."""
    import sys

    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import (QAbstractButton, QAbstractSpinBox, QComboBox, QFileDialog,
                                   QLineEdit, QSpinBox, QTabWidget)

    from studio.app import install_excepthook

    rng = random.Random(17)
    files = hostile_files(tmp_path)
    answer = lambda *args, **kwargs: (rng.choice(files), "")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", answer)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", answer)
    saved, hook = sys.excepthook, install_excepthook(window)
    errors = []
    hook.raised.connect(errors.append)
    actions = menu_actions(window.menuBar())
    try:
        for _ in range(ACTIONS):
            kind = rng.choice(["button", "spin", "combo", "action", "tab", "text", "wait"])
            if kind == "button":
                buttons = [b for b in window.findChildren(QAbstractButton)
                           if b.isEnabled() and b.isVisible()]
                rng.choice(buttons).click()
            elif kind == "spin":
                spin = rng.choice([s for s in window.findChildren(QAbstractSpinBox)
                                   if s.isEnabled() and hasattr(s, "minimum")])
                lo, hi = spin.minimum(), spin.maximum()
                value = rng.choice([lo, hi, lo + (hi - lo) * rng.random()])
                spin.setValue(int(value) if isinstance(spin, QSpinBox) else value)
            elif kind == "combo":
                combos = [c for c in window.findChildren(QComboBox) if c.isEnabled() and c.count()]
                combo = rng.choice(combos)
                combo.setCurrentIndex(rng.randrange(combo.count()))
            elif kind == "action":
                rng.choice(actions).trigger()
            elif kind == "tab":
                tabs = rng.choice(window.findChildren(QTabWidget))
                tabs.setCurrentIndex(rng.randrange(tabs.count()))
            elif kind == "text":
                edits = [e for e in window.findChildren(QLineEdit)
                         if e.isEnabled() and e.isVisible() and not e.isReadOnly()]
                if edits:  # typed as a user would: select all, type, Enter (QTest types ASCII only)
                    edit = rng.choice(edits)
                    edit.setFocus()
                    edit.selectAll()
                    qtbot.keyClick(edit, Qt.Key.Key_Backspace)
                    qtbot.keyClicks(edit, rng.choice(["", "-1", "1e309", "nan", "x" * 30, "9" * 40]))
                    qtbot.keyClick(edit, Qt.Key.Key_Return)
            qtbot.wait(rng.choice([0, 0, 5, 50]))
        window.controller.stop()
        qtbot.waitUntil(lambda: window.controller.current is None, timeout=120_000)
    finally:
        sys.excepthook = saved
    assert hook.count == 0, errors
