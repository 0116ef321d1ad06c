"""The main window: panels on the left, linked canvases and tabs on the right.

The window wires three things together and owns none of their logic: the Qt-free
`StudioState` (what the user chose), the `EngineController` (the one engine thread)
and the views. Decisions:

* Start-up is in two phases so the window shows before torch is imported: the
  constructor builds widgets only; `load_engine` (called once the window is up)
  imports the engine, fills the pickers and restores the last session.
* The degraded preview is computed on the GUI thread, directly with
  `Degradation.measure` and the same ε the job will draw (`SampleRNG` of the
  measurement seed), so the preview *is* the job's y. It costs microseconds at 28×28.
* Any input change cancels a running restoration (its result would be stale); with
  "Live" on, a debounced re-run follows (latest wins).
* The canvases share one scene rectangle (the working image's W × H) and one zoom.
* Failures (bad files, impossible settings, engine errors) go to the message bar;
  nothing here raises into Qt's event loop.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QFileDialog, QLabel, QMainWindow, QProgressBar, QScrollArea,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)
from superqt.utils import QSignalDebouncer

from studio.files import FileMenuMixin
from studio.panels.degradation import DegradationPanel
from studio.panels.method import MethodPanel
from studio.panels.source import SourcePanel
from studio.state import SAMPLE_PREFIX, StudioState, working_image
from studio.views.canvas import CanvasGrid
from studio.views.compare import CompareView
from studio.views.diversity import DiversityView, format_metrics
from studio.views.messages import MessageBar
from studio.views.playground import PlaygroundView
from studio.views.trajectory import TrajectoryFrame, TrajectoryView
from studio.worker import EngineController

CANVASES = [["clean", "degraded", "result"], ["live x_t", "live x̂0", "|result − clean|"]]
LIVE_DELAY_MS = 250
BADGE_DELAY_MS = 120
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"


class MainWindow(FileMenuMixin, QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("Restoration Studio")
        self.settings = settings
        self.state = StudioState()
        self.catalog = None
        self.controller = EngineController(self)
        self.working = None  # the source converted for the chosen model, (C, H, W)
        self.outcome = None  # the last finished restoration (`studio.worker.Outcome`)
        self.selected = 0  # the sample shown on the result canvas
        self.last_dir = str(Path.home())

        self.messages = MessageBar()
        self.source_panel = SourcePanel()
        self.degradation_panel = DegradationPanel(self.state.degradation)
        self.method_panel = MethodPanel(self.state.method)
        self.canvases = CanvasGrid(CANVASES, heat={"|result − clean|"})
        self.split = QCheckBox("split")
        self.split.setToolTip("before | after: the clean image left of a line you can drag, "
                              "the result right of it")
        self.canvases["result"].header.insertWidget(1, self.split)
        self.trajectory = TrajectoryView()
        self.diversity = DiversityView()
        self.compare = CompareView(self.controller)
        self.playground = PlaygroundView(self.controller)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.trajectory, "Trajectory")
        self.tabs.addTab(self.diversity, "Diversity")
        self.tabs.addTab(self.compare, "Compare")
        self.tabs.addTab(self.playground, "Playground (2-D)")
        self._build_layout()
        self._build_menus()
        self._build_status_bar()
        self.live_debouncer = QSignalDebouncer(self)
        self.live_debouncer.setTimeout(LIVE_DELAY_MS)
        self.live_debouncer.triggered.connect(self.run_job)
        # The preview image follows every slider move; its PSNR badge (of y, or of A⁺y
        # when y is smaller) waits until the slider rests for BADGE_DELAY_MS.
        self.badge_debouncer = QSignalDebouncer(self)
        self.badge_debouncer.setTimeout(BADGE_DELAY_MS)
        self.badge_debouncer.triggered.connect(self._update_preview_badge)
        self._preview = None  # (operator, y, x) of the last preview, for the badge
        self._noise_cache = (None, None)  # ((seed, scheme, shape), ε): redrawn only when they change
        self._connect()
        self.setAcceptDrops(True)
        self.resize(1440, 920)
        self._restore_window_settings()

    # -- construction -----------------------------------------------------------------
    def _build_layout(self) -> None:
        panels = QWidget()
        column = QVBoxLayout(panels)
        for panel in (self.source_panel, self.degradation_panel, self.method_panel):
            column.addWidget(panel)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidget(panels)
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.panel_scroll = scroll
        self._fit_panel_column()

        self.right_split = QSplitter(Qt.Orientation.Vertical)
        self.right_split.addWidget(self.canvases)
        self.right_split.addWidget(self.tabs)
        self.right_split.setSizes([520, 360])
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.messages)
        right_layout.addWidget(self.right_split, 1)

        self.main_split = QSplitter(Qt.Orientation.Horizontal)
        self.main_split.addWidget(scroll)
        self.main_split.addWidget(right)
        self.main_split.setStretchFactor(1, 1)
        self.main_split.setSizes([420, 1020])
        self.setCentralWidget(self.main_split)

    def _fit_panel_column(self) -> None:
        """Make the panel column wide enough that no control is cut off."""
        scroll = self.panel_scroll
        needed = scroll.widget().minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(max(380, needed + 6))

    def _action(self, menu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.setStatusTip(tip)
        action.triggered.connect(slot)
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file = bar.addMenu("&File")
        self._action(file, "&Open image…", self.choose_image, QKeySequence.StandardKey.Open)
        self._action(file, "Open &recipe…", self.choose_recipe, "Ctrl+Shift+O",
                     "restore the exact settings stored in an exported PNG or JSON recipe")
        export = file.addMenu("&Export")
        self._action(export, "Sample &grid PNG (with recipe)…", self.choose_export_grid, "Ctrl+E")
        self._action(export, "&Trajectory GIF/MP4…", self.choose_export_trajectory)
        self._action(export, "&Metrics CSV/JSON…", self.choose_export_metrics)
        self._action(file, "Save &screenshot…", self.choose_screenshot)
        file.addSeparator()
        self._action(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        run = bar.addMenu("&Run")
        self._action(run, "&Run", self.run_job, "Ctrl+R")
        self.stop_action = self._action(run, "&Stop", lambda: self.controller.stop(False), "Esc")
        self.keep_action = self._action(run, "Stop and &keep x̂0", lambda: self.controller.stop(True), "Ctrl+K")
        self.pause_action = self._action(run, "&Pause/resume", self.controller.toggle_pause, "Ctrl+P")
        view = bar.addMenu("&View")
        self._action(view, "&Reset zoom", self.reset_zoom, "Ctrl+0")

    def _build_status_bar(self) -> None:
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setTextVisible(True)
        self.status_text = QLabel("Loading the engine…")
        self.readout = QLabel()
        self.readout.setMinimumWidth(260)
        bar = self.statusBar()
        bar.addWidget(self.status_text, 1)
        bar.addPermanentWidget(self.readout)
        bar.addPermanentWidget(self.progress)
        self._set_busy(False)

    def _connect(self) -> None:
        self.source_panel.demo_chosen.connect(self.choose_demo)
        self.source_panel.open_requested.connect(self.choose_image)
        self.source_panel.draw_requested.connect(self.draw_source)
        self.method_panel.run_requested.connect(self.run_job)
        self.method_panel.stop_requested.connect(self.controller.stop)
        self.method_panel.pause_requested.connect(self.controller.toggle_pause)
        self.method_panel.live.toggled.connect(
            lambda on: self.live_debouncer.throttle() if on else self.live_debouncer.cancel())
        self.canvases.hovered.connect(self.readout.setText)
        self.trajectory.state_canvas.hovered.connect(self.readout.setText)
        self.diversity.sample_clicked.connect(self.show_sample)
        self.split.toggled.connect(lambda: self.show_sample(self.selected))
        self.state.source.events.all.connect(lambda *_: self._inputs_changed(source=True))
        self.state.degradation.events.all.connect(lambda *_: self._inputs_changed())
        self.state.method.events.all.connect(self._method_changed)
        c = self.controller
        c.started.connect(self._on_started)
        c.prepared.connect(self._on_prepared)
        c.frame.connect(self._on_frame)
        c.event.connect(self._on_event)
        c.finished.connect(self._on_finished)
        c.cancelled.connect(lambda ticket: self._set_status(f"Stopped {ticket.label}."))
        c.failed.connect(self._on_failed)
        c.busy_changed.connect(self._set_busy)
        c.paused_changed.connect(self._on_paused)

    # -- start-up -----------------------------------------------------------------------
    def load_engine(self) -> None:
        """Import the engine (torch), fill the pickers, restore the last session."""
        from studio.catalog import Catalog

        self.catalog = Catalog()
        self.source_panel.set_demo_images(self.catalog.demo_images, self.catalog.demo_labels)
        self.source_panel.set_draw_models([m for m, info in self.catalog.models.items()
                                           if info.is_image and self.catalog.samplers_for(m)])
        self.method_panel.set_catalog(self.catalog)
        self.playground.set_catalog(self.catalog)
        self.compare.set_source(self.state, self.catalog)
        if not self._restore_session():
            self.apply_defaults()
        self._fit_panel_column()
        self._set_status("Ready.")

    def apply_defaults(self) -> None:
        method, model, spec, params = self.catalog.default_choice()
        self.state.degradation.set_spec(spec)
        self.choose_method(method, model, params)
        self.choose_demo(0)

    def choose_method(self, method: str, model: str | None, params: dict) -> None:
        self.state.method.params = {}
        self.state.method.model = model
        self.state.method.method = method
        self.state.method.params = dict(params)

    # -- sources ----------------------------------------------------------------------
    def choose_demo(self, index: int) -> None:
        self.state.set_source(self.catalog.demo_images[index], f"demo:{index}")

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.last_dir, IMAGE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Load an image file as the source; on failure say why and keep the current one."""
        from engine.io.imageio import load_image
        from engine.core.step import BadInputError

        self.last_dir = str(Path(path).parent)
        try:
            image = load_image(path)
        except BadInputError as err:
            self.messages.error(f"Cannot open the image: {err}. The current image is kept.")
            return False
        self.state.set_source(image, str(path))
        self.messages.info(f"Opened {Path(path).name}.")
        return True

    def draw_source(self, model: str, seed: int) -> None:
        """Generate a source image from a model on the engine thread."""
        from engine.core.jobs import Request

        samplers = self.catalog.samplers_for(model)
        method = "ddim" if "ddim" in samplers else samplers[0]
        request = Request(method=f"{method}@{model}", seed=seed, n=1,
                          source=f"{SAMPLE_PREFIX}{method}@{model}:seed={seed}")
        self.controller.submit(request, purpose="draw")

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_path(paths[0])

    # -- inputs → previews ------------------------------------------------------------
    def _method_changed(self, *_) -> None:
        self._inputs_changed(source=True)  # the model may need another image shape

    def _inputs_changed(self, source: bool = False) -> None:
        if self.catalog is None or self.state.source.image is None:
            return
        if source:
            self._update_working_image()
        self.update_preview()
        current = self.controller.current
        if current is not None and current.purpose == "restore":
            self.controller.stop()
        if self.method_panel.live.isChecked():
            self.live_debouncer.throttle()

    def _update_working_image(self) -> None:
        info = self.catalog.methods.get(self.state.method.method)
        shape = self.catalog.model_shape(self.state.method.model) if info and info.needs_prior else None
        image, note = working_image(self.state.source.image, shape)
        self.working = image
        c, h, w = image.shape
        self.canvases.set_extent(w, h)
        self.trajectory.set_extent(w, h)
        self.canvases["clean"].set_image(image)
        self.source_panel.set_source(self.state.source.name, tuple(self.state.source.image.shape), note)
        self.degradation_panel.set_image_shape((c, h, w))

    def update_preview(self) -> None:
        """The measurement y of the current settings, exactly as the job will draw it."""
        from engine.core.step import BadInputError

        x = self.working[None]
        canvas = self.canvases["degraded"]
        try:
            degradation = self.state.degradation.degradation()
            op = degradation.operator(x.shape[1])
            op.check_input(tuple(x.shape))
            y = degradation.measure(x, self._measurement_noise(op.out_shape(tuple(x.shape))))
        except BadInputError as err:
            self.degradation_panel.set_description(f"<span style='color:#e06c6c'>{err}</span>")
            canvas.set_badge("invalid")
            self._preview = None
            return
        canvas.set_image(y[0])
        self._preview = (op, y, x)
        canvas.set_badge("PSNR …")  # never a stale figure while the slider moves
        self.badge_debouncer.throttle()
        _, c, h, w = y.shape
        applied = op.describe()
        model = "y = x + σ_y ε" if applied == "noise" else f"y = A x + σ_y ε, A = {applied}"
        self.degradation_panel.set_description(
            f"{model} · y is {w}×{h}×{c} · spec <tt>{degradation.spec()}</tt>")

    def _measurement_noise(self, shape: tuple[int, ...]):
        from engine.core.rng import measurement_noise

        key = (self.state.degradation.measurement_seed, self.state.degradation.measurement_noise, shape)
        if self._noise_cache[0] != key:
            self._noise_cache = (key, measurement_noise(key[0], shape[1:], key[1]))
        return self._noise_cache[1]

    def _update_preview_badge(self) -> None:
        from engine.evaluation.metrics import psnr

        if self._preview is None:
            return
        op, y, x = self._preview
        same = y.shape == x.shape  # else y is smaller: compare its pseudo-inverse A⁺y
        shown, label = (y, "y") if same else (op.pinv(y), "A⁺y")
        self.canvases["degraded"].set_badge(f"{label}: PSNR {float(psnr(shown.clamp(0, 1), x)):.1f} dB")

    # -- running ------------------------------------------------------------------------
    def run_job(self) -> None:
        from engine.core.step import BadInputError

        if self.catalog is None or self.working is None:
            return
        try:
            request = self.state.request(shape_of=self.catalog.model_shape)
        except BadInputError as err:
            self.messages.error(str(err))
            return
        self.controller.submit(request)

    def _on_event(self, ticket, event) -> None:
        """Progress of the other tasks (compare grid, playground); their views draw them."""
        self.progress.setMaximum(event.total)
        self.progress.setValue(event.index + 1)

    def _on_started(self, ticket) -> None:
        what = "Drawing a source image with" if ticket.purpose == "draw" else "Running"
        self._set_status(f"{what} {ticket.label}…")
        self.progress.setValue(0)
        if ticket.purpose == "restore":
            self.trajectory.clear()

    def _on_prepared(self, ticket, prepared) -> None:
        if ticket.purpose != "restore":
            return
        clean = self.canvases["clean"].array
        frames = [TrajectoryFrame(f"level {k}/{len(prepared.forward) - 1}", t, x, clean)
                  for k, (t, x) in enumerate(prepared.forward)]
        self.trajectory.set_forward(frames, "this method uses no prior" if not frames else "")

    def _on_frame(self, ticket, frame) -> None:
        self.progress.setMaximum(frame.total)
        self.progress.setValue(frame.index + 1)
        rate = f" · {frame.nfe_rate:.0f} NFE/s" if frame.nfe else ""
        self._set_status(f"{ticket.label}: step {frame.index + 1}/{frame.total} · "
                         f"ETA {frame.eta:.1f} s{rate}")
        if ticket.purpose != "restore":
            return
        t = "" if frame.t != frame.t else f"t = {frame.t:.3f}"
        self.canvases["live x_t"].set_image(frame.x_t)
        self.canvases["live x_t"].set_badge(t)
        self.canvases["live x̂0"].set_image(frame.x0_hat)
        self.canvases["live x̂0"].set_badge("" if frame.psnr is None else f"PSNR {frame.psnr:.1f} dB")
        self.trajectory.append(TrajectoryFrame(f"step {frame.index + 1}/{frame.total}",
                                               frame.t, frame.x_t, frame.x0_hat))

    def _on_finished(self, ticket, outcome) -> None:
        if ticket.purpose in ("compare", "playground"):
            self._set_status(f"Done: {ticket.label}.")
            return
        result = outcome.result
        if ticket.purpose == "draw":
            self.state.set_source(result.samples[0], ticket.request.source)
            self._set_status(f"Drew a source image with {ticket.label}.")
            return
        self.outcome = outcome
        self.trajectory.set_reverse([
            TrajectoryFrame(f"frame {k + 1}/{len(result.trajectory)}", t, x_t, x0)
            for k, (t, x_t, x0) in enumerate(result.trajectory)])
        self.diversity.set_outcome(outcome)
        self.show_sample(0)
        m = result.metrics
        how = "Stopped early; kept x̂0" if result.stopped else "Done"
        self._set_status(f"{how}: {ticket.label}, {m['n']} sample(s), NFE {m['nfe']}, "
                         f"{m['seconds']:.2f} s.")

    def _on_paused(self, paused: bool) -> None:
        self.method_panel.set_paused(paused)
        if paused:
            self._set_status(self.status_text.text() + " · paused")

    def _on_failed(self, ticket, message: str) -> None:
        self.messages.error(f"{ticket.label}: {message}")
        self._set_status(f"Failed: {ticket.label}.")

    def show_sample(self, k: int) -> None:
        if self.outcome is None:
            return
        samples = self.outcome.result.samples
        self.selected = min(k, len(samples) - 1)
        sample = samples[self.selected]
        canvas = self.canvases["result"]
        canvas.title_label.setText(f"<b>result</b> #{self.selected}")
        canvas.title_label.setToolTip(f"sample {self.selected} of {len(samples)} "
                                      "(click a tile in the Diversity tab to show another)")
        canvas.set_image(sample)
        psnrs, ssims = self.outcome.sample_psnr, self.outcome.sample_ssim
        canvas.set_badge(format_metrics(psnrs[self.selected], ssims[self.selected] if ssims else None)
                         if psnrs else "")
        clean = self.outcome.result.clean
        comparable = clean is not None and clean.shape == sample.shape
        canvas.set_split(clean if comparable and self.split.isChecked() else None)
        error = self.canvases["|result − clean|"]
        if comparable:
            diff = (sample - clean).abs().mean(0).numpy()
            error.set_image(diff, levels=(0.0, max(float(diff.max()), 1e-3)))
        else:
            error.set_image(None)

    def _set_busy(self, busy: bool) -> None:
        self.method_panel.set_busy(busy)
        for action in (self.stop_action, self.keep_action, self.pause_action):
            action.setEnabled(busy)
        if not busy:
            self.progress.setValue(self.progress.maximum())

    def _set_status(self, text: str) -> None:
        self.status_text.setText(text)

    def reset_zoom(self) -> None:
        self.canvases.reset_zoom()

    def closeEvent(self, event) -> None:
        self.save_settings()
        self.controller.shutdown()
        super().closeEvent(event)
