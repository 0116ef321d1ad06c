"""The Compare view: one input restored over an X × Y grid of settings, plus a metric plot.

Axes are NFE, noise σ_y, seed or method (``NAME`` or ``NAME@MODEL``); values are typed
as a comma-separated list. Decisions:

* The grid is capped at `MAX_CELLS` cells (a grid of 1000-step jobs on a 2-core CPU
  would run for hours); a larger request is refused with a message, not truncated.
* Cells run one after another on the engine thread as one task (`compare_events`), so
  Stop and latest-wins behave as for a single job; each cell appears when it is done.
* An axis that does not apply to a cell's method (NFE for pinv or tikhonov, which take
  no NFE) is ignored there: the cell runs without it and says "nfe n/a" (its line in the
  plot is dashed: flat by construction). A cell that cannot run (an operator a method
  does not support) shows its reason instead of an image; the others still run.
* The grid fits the tab's width (issue 15): the tiles shrink from `CELL` down to
  `MIN_CELL` pixels to fit the columns without a horizontal scroll bar, and each run
  lays out a fresh grid, so a smaller grid leaves no empty rows behind.
* The plot shows PSNR against the X values, one line per Y value; a method axis is
  categorical (its ticks are the method names). Numeric ticks are the values typed,
  written plainly (no SI prefix such as "x0.001", no log-axis minor labels colliding
  with the major ones); the legend is a line under the plot, so it covers no data.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (QGridLayout, QHBoxLayout, QLabel, QLineEdit, QPushButton,
                               QScrollArea, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from studio.panels.param_form import combo
from studio.tasks import compare_events
from studio.views.images import pixmap

MAX_CELLS = 36
CELL = 72  # largest tile side (px)
MIN_CELL = 40  # smallest tile side before a horizontal scroll bar appears
HEADER_WIDTH = 120  # the row headers' width (px); long method names wrap
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

        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.viewport().installEventFilter(self)  # re-fit the tiles when it resizes
        self._new_grid()
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "PSNR", units="dB")
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.legend = QLabel()
        self.legend.setWordWrap(True)
        plot_column = QWidget()
        plot_layout = QVBoxLayout(plot_column)
        plot_layout.setContentsMargins(0, 0, 0, 0)
        plot_layout.addWidget(self.plot, 1)
        plot_layout.addWidget(self.legend)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.scroll)
        split.addWidget(plot_column)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
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
        self.not_applicable: dict[tuple[int, int], str] = {}  # cell → the axis it ignores
        self.axes = ("nfe", [], None, [None])
        self.side = CELL  # the tiles' current side (px)

    def _new_grid(self) -> None:
        """A fresh, empty grid widget in the scroll area (the old one is deleted)."""
        self.cells = QWidget()
        self.grid = QGridLayout(self.cells)
        self.grid.setSpacing(4)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.scroll.setWidget(self.cells)

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Resize:
            self._fit_cells()
        return super().eventFilter(watched, event)

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

        not_applicable = {}

        def request(r, c, x, y):
            changes = {x_axis: x, **({y_axis: y} if y_axis else {})}
            try:
                ignored = self._not_applicable(changes)
                if ignored:
                    not_applicable[(r, c)] = ignored
                changes = {k: v for k, v in changes.items() if k != ignored}
                return self.state.request(shape_of=self.catalog.fitted_shape, n=n, **changes)
            except BadInputError as err:
                return str(err)

        if self.state is None or self.state.source.image is None:
            return
        grid = [[request(r, c, x, y) for c, x in enumerate(xs)] for r, y in enumerate(ys)]
        self._start(x_axis, xs, y_axis, ys)
        self.not_applicable = not_applicable
        self.controller.submit_task(compare_events, grid, purpose="compare",
                                    label=f"compare grid ({len(xs) * len(ys)} cells)")

    def _not_applicable(self, changes: dict) -> str | None:
        """The axis (only "nfe" can be) that the cell's method does not take, or None."""
        from engine.core.registry import split_spec

        if "nfe" not in changes:
            return None
        name, _ = split_spec(changes.get("method", self.state.method.spec))
        return None if any(row["name"] == "nfe" for row in self.catalog.params(name)) else "nfe"

    def _on_event(self, ticket, cell) -> None:
        if ticket.purpose == "compare":
            self.add_cell(cell)

    def _on_finished(self, ticket, _) -> None:
        if ticket.purpose == "compare":
            self.status.setText(f"All {len(self.results)} cells done.")

    def _start(self, x_axis: str, xs: list, y_axis: str | None, ys: list) -> None:
        """Lay out an empty grid for a run that is starting."""
        self._new_grid()
        self.results, self.not_applicable = {}, {}
        self.axes = (x_axis, xs, y_axis, ys)
        for c, x in enumerate(xs):
            self.grid.addWidget(self._header(f"{x_axis} = {x}"), 0, c + 1)
        for r, y in enumerate(ys):
            if y_axis:
                header = self._header(f"{y_axis} =<br>{y}")
                header.setFixedWidth(HEADER_WIDTH)
                self.grid.addWidget(header, r + 1, 0)
            for c in range(len(xs)):
                self.grid.addWidget(self._cell_label("…"), r + 1, c + 1)
        self._fit_cells()
        self.status.setText(f"Running {len(xs) * len(ys)} cells…")
        self._plot()

    def _fit_cells(self) -> None:
        """Size the tiles so that every column fits the visible width (see module doc)."""
        columns = len(self.axes[1])
        if not columns:
            return
        spacing = self.grid.spacing()
        header = HEADER_WIDTH + spacing if self.axes[2] else 0
        margins = self.grid.contentsMargins()
        free = self.scroll.viewport().width() - header - margins.left() - margins.right()
        self.side = int(max(MIN_CELL, min(CELL, free // columns - spacing - 8)))
        for r in range(len(self.axes[3])):
            for c in range(columns):
                item = self.grid.itemAtPosition(r + 1, c + 1)
                if item is not None:
                    item.widget().setFixedSize(self.side + 8, self.side + 8)
                    if (r, c) in self.results:
                        self._show_cell(item.widget(), self.results[(r, c)])

    def add_cell(self, cell) -> None:
        self.results[(cell.row, cell.col)] = cell
        label = self.grid.itemAtPosition(cell.row + 1, cell.col + 1).widget()
        self._show_cell(label, cell)
        total = len(self.axes[1]) * len(self.axes[3])
        self.status.setText(f"{len(self.results)}/{total} cells done.")
        self._plot()

    def _show_cell(self, label: QLabel, cell) -> None:
        if cell.error:
            label.setText(cell.error)
            label.setToolTip(cell.error)
            label.setStyleSheet("color:#e06c6c;")
            return
        label.setPixmap(pixmap(cell.thumbnail, self.side))
        psnr = "—" if cell.psnr is None else f"{cell.psnr:.1f} dB"
        ignored = self.not_applicable.get((cell.row, cell.col))
        note = f" · {ignored} n/a: this method takes no {ignored}" if ignored else ""
        label.setToolTip(f"PSNR {psnr} · SSIM {cell.ssim if cell.ssim is None else round(cell.ssim, 3)}"
                         f" · NFE {cell.nfe} · {cell.seconds:.2f} s{note}")
        label.setAccessibleDescription(f"{ignored} n/a" if ignored else "")

    def _header(self, text: str) -> QLabel:
        label = QLabel(f"<b>{text}</b>")
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setWordWrap(True)
        return label

    def _cell_label(self, text: str) -> QLabel:
        label = QLabel(text)
        label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        label.setFixedSize(self.side + 8, self.side + 8)
        label.setWordWrap(True)
        return label

    def _plot(self) -> None:
        x_axis, xs, y_axis, ys = self.axes
        self.plot.clear()
        numeric = x_axis != "method"
        log = x_axis == "nfe" and all(x > 0 for x in xs)
        positions = xs if numeric else list(range(len(xs)))
        self.plot.setLabel("bottom", x_axis)
        self.plot.setLogMode(x=log, y=False)
        # the values typed, written plainly, at their own places (log10 on a log axis)
        ticks = [((float(np.log10(x)) if log else x) if numeric else k, f"{x:g}" if numeric else str(x))
                 for k, x in enumerate(xs)]
        self.plot.getAxis("bottom").setTicks([ticks, []])
        entries = []
        for r, y in enumerate(ys):
            points = [(positions[c], self.results[(r, c)].psnr) for c in range(len(xs))
                      if (r, c) in self.results and self.results[(r, c)].psnr is not None]
            if points:
                px, py = np.array(points, dtype=float).T
                flat = any((r, c) in self.not_applicable for c in range(len(xs)))
                colour = pg.intColor(r, max(len(ys), 1))
                pen = pg.mkPen(colour, width=2, style=Qt.PenStyle.DashLine if flat else Qt.PenStyle.SolidLine)
                self.plot.plot(px, py, pen=pen, symbol="o", symbolBrush=colour)
                if y is not None:
                    ignored = f" ({self.not_applicable[(r, 0)]} n/a)" if (r, 0) in self.not_applicable else ""
                    entries.append(f"<span style='color:{colour.name()}'>■</span> {y_axis} = {y}{ignored}")
        self.legend.setText(" &nbsp; ".join(entries))
