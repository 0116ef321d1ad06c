"""The Playground: a 2-D prior's density and particles that any sampler runs back, live.

The exact 2-D priors (e.g. ``ring8``, eight Gaussians on a circle) make a sampler's
behaviour visible: N particles are drawn from the prior, diffused forward to t = 1
under its schedule (no network), then a registered sampler generates N new particles
from its own start distribution while the heat map shows ``log p_t`` at the current
level. Everything is computed on the engine thread (`studio.tasks.playground_events`).
The view is fixed to ``[−EXTENT, EXTENT]²``; particles far out at t ≈ 1 (a VE schedule
reaches σ = 10) come into view as they are run back (zoom out with the mouse wheel).

Bias (issue 15): under the plot, each finished run's distance from the exact prior —
W2 to an exact draw of the same size, next to W2 between two exact draws (what an
unbiased sampler reads at this n), and the relative covariance and mean errors
(`engine.evaluation.playground.sampler_bias`, computed on the engine thread). The last
`BIAS_ROWS` runs stay listed, so naive and momentum (or any two samplers) can be read
side by side.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from studio.panels.param_form import ParamForm, combo
from studio.tasks import playground_events

EXTENT = 4.0  # half-width of the plotted square in data units
GRID = 120  # density grid resolution
DENSITY_RANGE = 12.0  # log-density levels shown below the maximum
BIAS_ROWS = 4  # finished runs listed in the bias table


class PlaygroundView(QWidget):
    def __init__(self, controller, parent=None):
        super().__init__(parent)
        self.controller = controller
        self.catalog = None
        controller.event.connect(self._on_event)
        controller.finished.connect(self._on_finished)
        self.model, self.method = combo(8), combo(8)
        self.form = ParamForm()
        self.particles = QSpinBox()
        self.particles.setRange(10, 5000)
        self.particles.setValue(400)
        self.particles.setToolTip("number of particles (one sample each)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.run_button = QPushButton("Diffuse and sample")
        self.run_button.clicked.connect(self._request)
        self.status = QLabel("Choose a 2-D prior and a sampler.")
        self.status.setWordWrap(True)
        self.bias = QLabel()
        self.bias.setWordWrap(True)
        self.bias.setToolTip("distance of the sampled particles from the exact prior: W2 to an "
                             "exact draw of the same size (two exact draws read the value in "
                             "brackets: an empirical W2 is never 0), and the relative errors of "
                             "the covariance and the mean")
        self.bias_rows: list[tuple[str, dict]] = []  # (method@model, bias), newest last

        self.plot = pg.PlotWidget()
        self.plot.setAspectLocked(True)
        self.plot.showGrid(x=True, y=True, alpha=0.2)
        self.density = pg.ImageItem(axisOrder="row-major")
        self.density.setColorMap(pg.colormap.get("viridis"))
        self.density.setRect(QRectF(-EXTENT, -EXTENT, 2 * EXTENT, 2 * EXTENT))
        self.plot.addItem(self.density)
        self.scatter = pg.ScatterPlotItem(size=4, pen=None, brush=pg.mkBrush(255, 140, 60, 200))
        self.plot.addItem(self.scatter)
        self.plot.setRange(xRange=(-EXTENT, EXTENT), yRange=(-EXTENT, EXTENT), padding=0)

        controls = QVBoxLayout()
        for label, widget in (("prior", self.model), ("sampler", self.method)):
            row = QHBoxLayout()
            row.addWidget(QLabel(label))
            row.addWidget(widget, 1)
            controls.addLayout(row)
        controls.addWidget(self.form)
        row = QHBoxLayout()
        row.addWidget(QLabel("particles"))
        row.addWidget(self.particles)
        row.addWidget(QLabel("seed"))
        row.addWidget(self.seed)
        controls.addLayout(row)
        controls.addWidget(self.run_button)
        controls.addWidget(self.status)
        controls.addStretch(1)
        plot_column = QVBoxLayout()
        plot_column.addWidget(self.plot, 1)
        plot_column.addWidget(self.bias)
        layout = QHBoxLayout(self)
        layout.addLayout(controls, 1)
        layout.addLayout(plot_column, 3)
        self.model.currentIndexChanged.connect(self._fill_methods)
        self.method.currentIndexChanged.connect(self._fill_form)

    def set_catalog(self, catalog) -> None:
        self.catalog = catalog
        self.model.clear()
        self.model.addItems(catalog.toy_models())
        self.setEnabled(self.model.count() > 0)

    def _fill_methods(self) -> None:
        self.method.clear()
        if self.catalog is not None and self.model.currentText():
            self.method.addItems(self.catalog.samplers_for(self.model.currentText()))

    def _fill_form(self) -> None:
        if self.method.currentText():
            self.form.set_fields(self.catalog.params(self.method.currentText()), {})

    def _request(self) -> None:
        if self.model.currentText() and self.method.currentText():
            self.run(self.model.currentText(), self.method.currentText(), self.form.values(),
                     self.particles.value(), self.seed.value())

    def run(self, model: str, method: str, params: dict, n: int, seed: int) -> None:
        """Diffuse n particles of ``model`` forward, then sample n with ``method``, live."""
        self.controller.submit_task(playground_events, model, method, params, n, seed, EXTENT, GRID,
                                    purpose="playground", label=f"{method}@{model} particles")

    def _on_event(self, ticket, event) -> None:
        if ticket.purpose == "playground":
            self.show_particles(event)

    def _on_finished(self, ticket, result) -> None:
        if ticket.purpose == "playground":
            self.status.setText(self.status.text() + f" · done, NFE {result.metrics['nfe']}")
            if "bias" in result.metrics:
                self.show_bias(ticket.label.removesuffix(" particles"), result.metrics["bias"])

    def show_bias(self, run: str, bias: dict) -> None:
        """Add one finished run's bias (`SamplerBias` fields) to the table beside the plot."""
        self.bias_rows = (self.bias_rows + [(run, bias)])[-BIAS_ROWS:]
        rows = "".join(
            f"<tr><td>{name}</td><td align='right'>{b['w2']:.3f}</td>"
            f"<td align='right'>{b['w2_floor']:.3f}</td>"
            f"<td align='right'>{100 * b['cov_error']:.1f} %</td>"
            f"<td align='right'>{100 * b['mean_error']:.1f} %</td></tr>"
            for name, b in reversed(self.bias_rows))
        self.bias.setText(
            "<table cellspacing='0' cellpadding='2'><tr><th align='left'>bias against the exact "
            f"prior ({bias['points']} particles)</th><th>&nbsp;W2</th><th>&nbsp;W2 of two exact "
            "draws</th><th>&nbsp;covariance error</th><th>&nbsp;mean error</th></tr>"
            f"{rows}</table>")

    def show_particles(self, event) -> None:
        """Draw one `studio.tasks.Particles` event."""
        self.scatter.setData(event.points[:, 0], event.points[:, 1])
        if event.log_density is not None:
            top = float(np.max(event.log_density))
            self.density.setImage(event.log_density, levels=(top - DENSITY_RANGE, top))
            self.density.setRect(QRectF(-EXTENT, -EXTENT, 2 * EXTENT, 2 * EXTENT))
        what = "forward x0 → x_t (schedule)" if event.phase == "forward" else f"sampler {self.method.currentText()}"
        t = "—" if event.t != event.t else f"{event.t:.3f}"
        inside = float(np.mean(np.all(np.abs(event.points) <= EXTENT, axis=1)))
        self.status.setText(f"{what}: step {event.index + 1}/{event.total}, t = {t}; "
                            f"{inside:.0%} of the particles in view")
