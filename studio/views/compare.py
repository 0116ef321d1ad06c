"""The Compare view: one input restored over an X × Y grid of settings, plus a metric plot.

Axes are NFE, noise σ_y, seed or method (``NAME`` or ``NAME@MODEL``); values are typed
as a comma-separated list. Decisions:

* The grid is capped at `MAX_CELLS` cells (a grid of 1000-step jobs on a 2-core CPU
  would run for hours); a larger request is refused with a message, not truncated.
* Cells run one after another on the engine thread as one task (`compare_events`), so
  Stop and latest-wins behave as for a single job; each cell appears when it is done.
* A cell that cannot run (a method without an NFE parameter, an operator a method does
  not support) shows its reason instead of an image; the others still run.
* The plot shows PSNR against the X values, one line per Y value; a method axis is
  categorical (its ticks are the method names).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QScrollArea, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from studio.panels.param_form import combo
from studio.tasks import compare_events
from studio.views.images import pixmap

MAX_CELLS = 36
CELL = 72
AXES = {"NFE": "nfe", "noise σ_y": "noise", "seed": "seed", "method": "method"}
PARSERS = {"nfe": int, "noise": float, "seed": int, "method": str.strip}
DEFAULT_VALUES = {"nfe": "5, 10, 25, 50", "noise": "0.05, 0.1, 0.2", "seed": "0, 1, 2",
                  "method": "ddim@empirical-vp, ddpm@empirical-vp, tikhonov"}


def parse_values(axis: str, text: str) -> list:
    """The values typed for an axis; raises ValueError with the offending item."""
    values = []
    for item in filter(None, (v.strip() for v in text.split(","))):
        try:
            values.append(PARSERS[axis](item))
        except ValueError:
            raise ValueError(f"{item!r} is not a valid {axis} value") from None
    if not values:
        raise ValueError(f"give at least one {axis} value")
    return values


class CompareView(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.state = self.catalog = None
        controller.event.connect(self._on_event)
        controller.finished.connect(self._on_finished)
        self.x_axis, self.y_axis = combo(8), combo(8)
        for label, key in AXES.items():
            self.x_axis.addItem(label, key)
            self.y_axis.addItem(label, key)
        self.y_axis.insertItem(0, "(none)", None)
        self.x_values, self.y_values = QLineEdit(DEFAULT_VALUES["nfe"]), QLineEdit()
        self.x_axis.currentIndexChanged.connect(lambda: self.x_values.setText(DEFAULT_VALUES[self.x_axis.currentData()]))
        self.y_axis.currentIndexChanged.connect(
            lambda: self.y_values.setText(DEFAULT_VALUES.get(self.y_axis.currentData(), "")))
        self.y_axis.setCurrentIndex(0)
        self.samples = QSpinBox()
        self.samples.setRange(1, 16)
        self.samples.setToolTip("samples per cell (the image shows sample 0; PSNR is their mean)")
        self.run_button = QPushButton("Run grid")
        self.run_button.setToolTip(f"runs every cell on the engine thread (at most {MAX_CELLS} cells)")
        self.run_button.clicked.connect(self._request)
        self.status = QLabel(f"Restore the current input over a grid of settings (≤ {MAX_CELLS} cells).")

        self.cells = QWidget()
        self.grid = QGridLayout(self.cells)
        self.grid.setSpacing(4)
        scroll = QScrollArea()
        scroll.setWidget(self.cells)
        scroll.setWidgetResizable(True)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "PSNR", units="dB")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.addLegend(offset=(-10, 10))
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(scroll)
        split.addWidget(self.plot)
        split.setSizes([600, 400])

        controls = QHBoxLayout()
        for widget in (QLabel("X"), self.x_axis, self.x_values, QLabel("Y"), self.y_axis,
                       self.y_values, QLabel("samples"), self.samples, self.run_button):
            controls.addWidget(widget, 2 if isinstance(widget, QLineEdit) else 0)
        layout = QVBoxLayout(self)
        layout.addLayout(controls)
        layout.addWidget(self.status)
        layout.addWidget(split, 1)
        self.results: dict[tuple[int, int], object] = {}
        self.axes = ("nfe", [], None, [None])

    def _request(self) -> None:
        x_axis, y_axis = self.x_axis.currentData(), self.y_axis.currentData()
        try:
            xs = parse_values(x_axis, self.x_values.text())
            ys = parse_values(y_axis, self.y_values.text()) if y_axis else [None]
        except ValueError as err:
            self.status.setText(f"<span style='color:#e06c6c'>{err}</span>")
            return
        if x_axis == y_axis:
            self.status.setText("<span style='color:#e06c6c'>choose two different axes</span>")
            return
        if len(xs) * len(ys) > MAX_CELLS:
            self.status.setText(f"<span style='color:#e06c6c'>{len(xs)} × {len(ys)} = "
                                f"{len(xs) * len(ys)} cells; at most {MAX_CELLS}</span>")
            return
        self.run(x_axis, xs, y_axis, ys, self.samples.value())

    def set_source(self, state, catalog) -> None:
        """The `StudioState` whose input and settings the grid varies."""
        self.state, self.catalog = state, catalog

    def run(self, x_axis: str, xs: list, y_axis: str | None, ys: list, n: int = 1) -> None:
        """Restore the current input over the grid on the engine thread."""
        from engine.core.step import BadInputError

        def request(x, y):
            changes = {x_axis: x, **({y_axis: y} if y_axis else {})}
            try:
                return self.state.request(shape_of=self.catalog.model_shape, n=n, **changes)
            except BadInputError as err:
                return str(err)

        if self.state is None or self.state.source.image is None:
            return
        grid = [[request(x, y) for x in xs] for y in ys]
        self._start(x_axis, xs, y_axis, ys)
        self.controller.submit_task(compare_events, grid, purpose="compare",
                                    label=f"compare grid ({len(xs) * len(ys)} cells)")

    def _on_event(self, ticket, cell) -> None:
        if ticket.purpose == "compare":
            self.add_cell(cell)

    def _on_finished(self, ticket, _) -> None:
        if ticket.purpose == "compare":
            self.status.setText(f"All {len(self.results)} cells done.")

    def _start(self, x_axis: str, xs: list, y_axis: str | None, ys: list) -> None:
        """Lay out an empty grid for a run that is starting."""
        while self.grid.count():
            self.grid.takeAt(0).widget().deleteLater()
        self.results = {}
        self.axes = (x_axis, xs, y_axis, ys)
        for c, x in enumerate(xs):
            self.grid.addWidget(self._header(f"{x_axis} = {x}"), 0, c + 1)
        for r, y in enumerate(ys):
            if y_axis:
                self.grid.addWidget(self._header(f"{y_axis} =\n{y}"), r + 1, 0)
            for c in range(len(xs)):
                self.grid.addWidget(self._cell_label("…"), r + 1, c + 1)
        self.status.setText(f"Running {len(xs) * len(ys)} cells…")
        self._plot()

    def add_cell(self, cell) -> None:
        self.results[(cell.row, cell.col)] = cell
        label = self.grid.itemAtPosition(cell.row + 1, cell.col + 1).widget()
        if cell.error:
            label.setText(cell.error)
            label.setToolTip(cell.error)
            label.setStyleSheet("color:#e06c6c;")
        else:
            label.setPixmap(pixmap(cell.thumbnail, CELL))
            psnr = "—" if cell.psnr is None else f"{cell.psnr:.1f} dB"
            label.setToolTip(f"PSNR {psnr} · SSIM {cell.ssim if cell.ssim is None else round(cell.ssim, 3)}"
                             f" · NFE {cell.nfe} · {cell.seconds:.2f} s")
        total = len(self.axes[1]) * len(self.axes[3])
        self.status.setText(f"{len(self.results)}/{total} cells done.")
        self._plot()

    def _header(self, text: str) -> QLabel:
        label = QLabel(f"<b>{text}</b>")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        return label

    def _cell_label(self, text: str) -> QLabel:
        label = QLabel(text)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setFixedSize(CELL + 24, CELL + 8)
        label.setWordWrap(True)
        return label

    def _plot(self) -> None:
        x_axis, xs, y_axis, ys = self.axes
        self.plot.clear()
        numeric = x_axis != "method"
        positions = xs if numeric else list(range(len(xs)))
        self.plot.setLabel("bottom", x_axis)
        self.plot.getAxis("bottom").setTicks(None if numeric else [list(enumerate(xs))])
        self.plot.setLogMode(x=x_axis == "nfe" and all(x > 0 for x in xs), y=False)
        for r, y in enumerate(ys):
            points = [(positions[c], self.results[(r, c)].psnr) for c in range(len(xs))
                      if (r, c) in self.results and self.results[(r, c)].psnr is not None]
            if points:
                px, py = np.array(points, dtype=float).T
                pen = pg.mkPen(pg.intColor(r, max(len(ys), 1)), width=2)
                self.plot.plot(px, py, pen=pen, symbol="o", symbolBrush=pen.color(),
                               name=None if y is None else f"{y_axis} = {y}")
