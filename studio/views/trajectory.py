"""The trajectory view: the reverse trajectory live, then a scrubber to browse it.

Two modes share one scrubber: *reverse* (what the method did: x_t and its x̂0 at each
recorded step, streamed while it runs) and *forward* (the clean image corrupted under
the prior's schedule, x0 → x_t, with one fixed noise draw, over the levels the reverse
run covers: `studio.tasks.reverse_start`). Decisions:

* Frames are 8-bit thumbnails (DESIGN §3). While a job runs the list grows by at most
  ≈25 frames a second; past `MAX_FRAMES` every other frame is dropped, so the whole
  path stays visible at half the density (the same rule as `engine.core.jobs`).
* While streaming, the scrubber follows the newest frame unless the user has moved it
  away from the end; when the job ends the list is replaced by the job's own bounded
  trajectory (which covers every step, not only the ones that reached the screen).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QButtonGroup, QHBoxLayout, QLabel, QRadioButton, QSlider,
                               QToolButton, QVBoxLayout, QWidget)

from studio.views.canvas import ImageCanvas

MAX_FRAMES = 256
PLAY_FPS = 12


@dataclass(frozen=True)
class TrajectoryFrame:
    label: str  # e.g. "step 12/50"
    t: float
    x_t: np.ndarray
    x0_hat: np.ndarray | None


class TrajectoryView(QWidget):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.frames: dict[str, list[TrajectoryFrame]] = {"reverse": [], "forward": []}
        self.mode = "reverse"
        self.forward_note = "no prior"

        self.reverse_button = QRadioButton("Reverse (method)")
        self.forward_button = QRadioButton("Forward x0 → x_t (prior's schedule, the run's levels)")
        self.reverse_button.setChecked(True)
        modes = QButtonGroup(self)
        for button in (self.reverse_button, self.forward_button):
            modes.addButton(button)
        self.reverse_button.toggled.connect(lambda on: self.set_mode("reverse" if on else "forward"))

        self.state_canvas = ImageCanvas("x_t")
        self.estimate_canvas = ImageCanvas("x̂0")
        self.estimate_canvas.link_to(self.state_canvas)

        self.play_button = QToolButton()
        self.play_button.setText("▶")
        self.play_button.setToolTip("Play the trajectory")
        self.play_button.setCheckable(True)
        self.play_button.toggled.connect(self._toggle_play)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.valueChanged.connect(self._show)
        self.position = QLabel("no trajectory yet")
        self.position.setMinimumWidth(210)
        self.timer = QTimer(self)
        self.timer.setInterval(1000 // PLAY_FPS)
        self.timer.timeout.connect(self._advance)

        top = QHBoxLayout()
        top.addWidget(self.reverse_button)
        top.addWidget(self.forward_button)
        top.addStretch(1)
        canvases = QHBoxLayout()
        canvases.addWidget(self.state_canvas)
        canvases.addWidget(self.estimate_canvas)
        scrub = QHBoxLayout()
        scrub.addWidget(self.play_button)
        scrub.addWidget(self.slider, 1)
        scrub.addWidget(self.position)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(canvases, 1)
        layout.addLayout(scrub)

    # -- content ----------------------------------------------------------------------
    @property
    def current(self) -> list[TrajectoryFrame]:
        return self.frames[self.mode]

    def clear(self) -> None:
        self.frames["reverse"] = []
        self._refresh(follow=True)

    def append(self, frame: TrajectoryFrame) -> None:
        """Add a live frame; the scrubber follows it unless the user moved it back."""
        frames = self.frames["reverse"]
        following = self.slider.value() >= self.slider.maximum()
        frames.append(frame)
        if len(frames) > MAX_FRAMES:
            self.frames["reverse"] = frames[::2]
        if self.mode == "reverse":
            self._refresh(follow=following)

    def set_reverse(self, frames: list[TrajectoryFrame]) -> None:
        self.frames["reverse"] = list(frames)
        if self.mode == "reverse":
            self._refresh(follow=True)

    def set_forward(self, frames: list[TrajectoryFrame], note: str = "") -> None:
        self.frames["forward"] = list(frames)
        self.forward_note = note
        if self.mode == "forward":
            self._refresh(follow=False)

    def set_extent(self, width: float, height: float) -> None:
        self.state_canvas.set_extent(width, height)
        self.estimate_canvas.set_extent(width, height)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        self.estimate_canvas.title_label.setText("<b>x̂0</b>" if mode == "reverse" else "<b>x0 (clean)</b>")
        self._refresh(follow=mode == "reverse")

    # -- scrubbing --------------------------------------------------------------------
    def _refresh(self, follow: bool) -> None:
        frames = self.current
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, len(frames) - 1))
        if follow or self.slider.value() > self.slider.maximum():
            self.slider.setValue(self.slider.maximum() if follow else 0)
        self.slider.blockSignals(False)
        self._show(self.slider.value())

    def _show(self, index: int) -> None:
        frames = self.current
        if not frames:
            self.state_canvas.set_image(None)
            self.estimate_canvas.set_image(None)
            self.position.setText("no trajectory yet" if self.mode == "reverse"
                                  else f"no forward trajectory ({self.forward_note})")
            return
        frame = frames[min(index, len(frames) - 1)]
        self.state_canvas.set_image(frame.x_t)
        self.estimate_canvas.set_image(frame.x0_hat)
        t = "—" if frame.t != frame.t else f"{frame.t:.3f}"
        self.position.setText(f"{frame.label} · t = {t}")

    def _toggle_play(self, playing: bool) -> None:
        self.play_button.setText("⏸" if playing else "▶")
        if playing:
            if self.slider.value() >= self.slider.maximum():
                self.slider.setValue(0)
            self.timer.start()
        else:
            self.timer.stop()

    def _advance(self) -> None:
        if self.slider.value() >= self.slider.maximum():
            self.play_button.setChecked(False)
        else:
            self.slider.setValue(self.slider.value() + 1)
