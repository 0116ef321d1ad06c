"""GUI tests run offscreen with real widgets, real signals and the real engine thread."""

import os

os.environ["QT_QPA_PLATFORM"] = "offscreen"

import pytest  # noqa: E402

import studio  # noqa: E402,F401  (selects the Qt binding before pytest-qt imports Qt)


@pytest.fixture
def window(qtbot):
    """A main window with the engine loaded, no stored settings, Live off."""
    from studio.main_window import MainWindow

    w = MainWindow(settings=None)
    qtbot.addWidget(w)
    w.method_panel.live.setChecked(False)
    w.load_engine()
    w.show()
    yield w
    w.controller.shutdown()


@pytest.fixture
def run_to_end(qtbot, window):
    """Run the window's current settings on the engine thread; returns the Outcome."""
    def run(timeout=60_000):
        with qtbot.waitSignal(window.controller.finished, timeout=timeout) as blocker:
            window.run_job()
        return blocker.args[1]
    return run
