"""Issue 15 (items 1, 2, 3, 7, 11): what a new user met driving the real window.

Each test drives the real window offscreen (pytest-qt) the way a user would and failed
on the code before its fix: canvases that zoomed out to a dot, results that did not
say which run they showed, input changes that cancelled a running job with Live off,
counters that disagreed with the job, previews that blocked the event loop.
"""

import numpy as np
import pytest
import torch
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication


def settle(qtbot, ms: int = 50) -> None:
    qtbot.wait(ms)  # let the layouts deliver their resize events


def fits(canvas, width: float, height: float) -> bool:
    """The whole image is visible and fills the view in its limiting direction."""
    (x0, x1), (y0, y1) = canvas.box.viewRange()
    inside = x0 <= 0.0 and y0 <= 0.0 and x1 >= width and y1 >= height
    snug = min((x1 - x0) / width, (y1 - y0) / height) < 1.1
    return inside and snug


def start_long_ddpm(window, qtbot, steps: int = 3):
    """A 400-step ancestral DDPM on the exact prior; its ticket once ``steps`` ran."""
    window.choose_method("ddpm", "empirical-vp", {"nfe": 400})
    window.state.degradation.set_spec("noise=1")
    window.state.method.n = 2
    window.run_job()
    ticket = window.controller.current
    qtbot.waitUntil(lambda: ticket.steps >= steps, timeout=30_000)
    return ticket


# -- item 1: canvases keep the image fitted (or the user's zoom) through any resize -------

def test_canvases_keep_the_image_fitted_through_splitter_drags_and_window_resizes(window, qtbot):
    settle(qtbot)
    h, w = window.working.shape[-2:]
    canvases = list(window.canvases.canvases.values())
    assert all(fits(c, w, h) for c in canvases)
    window.right_split.setSizes([5, 900])  # the splitter dragged down to the tabs' edge
    settle(qtbot)
    window.right_split.setSizes([520, 360])  # and back up
    settle(qtbot)
    assert all(fits(c, w, h) for c in canvases), canvases[0].box.viewRange()
    window.resize(700, 500)
    settle(qtbot)
    window.resize(1440, 920)
    settle(qtbot)
    assert all(fits(c, w, h) for c in canvases), canvases[0].box.viewRange()


def test_a_users_zoom_survives_resizes_relative_to_the_image(window, qtbot):
    settle(qtbot)
    clean, result = window.canvases["clean"], window.canvases["result"]
    viewport = clean.view.viewport()
    centre = QPointF(viewport.width() / 2, viewport.height() / 2)
    for _ in range(3):  # three wheel notches in, over the middle of the clean canvas
        wheel = QWheelEvent(centre, viewport.mapToGlobal(centre), QPoint(0, 0), QPoint(0, 120),
                            Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
                            Qt.ScrollPhase.NoScrollPhase, False)
        QApplication.sendEvent(viewport, wheel)
    settle(qtbot)
    zoomed = np.array(clean.box.viewRange())
    assert (zoomed[:, 1] - zoomed[:, 0]).min() < 0.9 * 28  # zoomed in
    window.right_split.setSizes([5, 900])
    settle(qtbot)
    window.right_split.setSizes([520, 360])
    settle(qtbot)
    window.resize(700, 500)
    settle(qtbot)
    window.resize(1440, 920)
    settle(qtbot)
    np.testing.assert_allclose(clean.box.viewRange(), zoomed, atol=0.5)  # within half a pixel
    np.testing.assert_allclose(result.box.viewRange(), zoomed, atol=0.5)  # still linked
    window.reset_zoom()  # Ctrl+0
    settle(qtbot)
    assert fits(clean, 28, 28) and fits(result, 28, 28)
