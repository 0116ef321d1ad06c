"""The main window: panels on the left, linked canvases and tabs on the right.

The window wires three things together and owns none of their logic: the Qt-free
`StudioState` (what the user chose), the `EngineController` (the one engine thread)
and the views. This file holds the window's construction (widgets, layout, menus,
status bar, signal wiring) and its start-up; the rest lives along its seams:

* `studio.preview` (`PreviewMixin`): inputs → working image → degraded preview, and
  which input change reaches which view;
* `studio.runs` (`RunMixin`): submitting jobs and drawing what the engine thread sends;
* `studio.files` (`FileMenuMixin`): sources, recipes, exports, persisted settings.

Decisions:

* Start-up is in two phases so the window shows before torch is imported: the
  constructor builds widgets only; `load_engine` (called once the window is up)
  imports the engine, generates the degradation panel from the operator registry,
  fills the pickers and restores the last session.
* The canvases share one scene rectangle (the working image's W × H) and one zoom.
* Torch's one-time costs that the first preview of some operator would pay on the GUI
  thread are paid on a short-lived thread at start-up (`warm_up`).
* Failures (bad files, impossible settings, engine errors) go to the message bar;
  nothing here raises into Qt's event loop.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QCheckBox, QLabel, QMainWindow, QProgressBar, QScrollArea,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)
from studio.files import FileMenuMixin
from studio.panels.degradation import DegradationPanel
from studio.panels.method import MethodPanel
from studio.panels.source import SourcePanel
from studio.preview import PreviewMixin, keep_freed_buffers
from studio.runs import RunMixin
from studio.state import StudioState
from studio.views.canvas import CanvasGrid
from studio.views.compare import CompareView
from studio.views.diversity import DiversityView
from studio.views.messages import MessageBar
from studio.views.playground import PlaygroundView
from studio.views.trajectory import TrajectoryView
from studio.worker import EngineController

def warm_up() -> None:
    """Pay one-time costs at start-up, off the GUI thread: the first operation on a meta
    tensor (`Operator.out_shape`, asked by the first blur or downsampling preview) loads
    torch's meta registrations, 3.6 s on the shared 2-core machine; and the imports that
    jobs would otherwise make later. An import on a job's thread holds the GIL while
    extension modules initialise: scipy.optimize (the playground's bias figures, via
    `engine.core.wasserstein`) froze the GUI for 200 ms in the random-input bench."""
    import torch

    torch.zeros(1, device="meta") + 1
    import cv2  # noqa: F401  (nlm, bicubic)

    import engine.core.wasserstein  # noqa: F401  (scipy.optimize)


CANVASES = [["clean", "degraded", "result"], ["live x_t", "live x̂0", "|result − clean|"]]


class MainWindow(PreviewMixin, RunMixin, FileMenuMixin, QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("Restoration Studio")
        self.settings = settings
        self.state = StudioState()
        self.catalog = None
        self.controller = EngineController(self)
        self.working = None  # the source converted for the chosen model, (C, H, W)
        self._source_note = ""  # what the conversion did, for the source panel
        self.outcome = None  # the last finished restoration (`studio.worker.Outcome`)
        self.selected = 0  # the sample shown on the result canvas
        self.last_dir = str(Path.home())

        self.messages = MessageBar()
        self.source_panel = SourcePanel()
        self.degradation_panel = DegradationPanel(self.state.degradation)
        self.method_panel = MethodPanel(self.state.method)
        self.method_panel.watch_degradation(self.state.degradation, lambda: self.degradation_panel.shape[0])
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
        self._build_preview()
        self._build_runs()
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
        self.canvases.hovered.connect(self.readout.setText)
        self.trajectory.state_canvas.hovered.connect(self.readout.setText)
        self.diversity.sample_clicked.connect(self.show_sample)
        self.split.toggled.connect(lambda: self.show_sample(self.selected))
        self._connect_inputs()
        c = self.controller
        c.started.connect(self._on_started)
        c.prepared.connect(self._on_prepared)
        c.frame.connect(self._on_frame)
        c.event.connect(self._on_event)
        c.finished.connect(self._on_finished)
        c.cancelled.connect(self._on_cancelled)
        c.failed.connect(self._on_failed)
        c.busy_changed.connect(self._set_busy)
        c.paused_changed.connect(self._on_paused)

    # -- start-up -----------------------------------------------------------------------
    def load_engine(self) -> None:
        """Import the engine (torch), fill the pickers, restore the last session."""
        import torch

        from engine.core.operators import allowed_values, degradation_rows
        from studio.catalog import Catalog

        torch.set_num_threads(1)  # on the GUI thread only: previews are small (studio.preview)
        keep_freed_buffers()  # the process's heap (studio.preview)
        # not a daemon: killed inside torch at exit, it would abort the process
        self.warm_up = threading.Thread(target=warm_up, name="warm-up")
        self.warm_up.start()
        self.degradation_panel.set_rows(degradation_rows(), allowed_values)
        self.catalog = Catalog()
        self.source_panel.set_demo_images(self.catalog.demo_images, self.catalog.demo_labels)
        drawable = [m for m, info in self.catalog.models.items()
                    if info.is_image and self.catalog.samplers_for(m)]
        demo_shape = tuple(self.catalog.demo_images[0].shape)  # the embedded default domain first,
        default_model = self.catalog.default_choice()[1]  # and in it the default method's model
        self.source_panel.set_draw_models(
            sorted(drawable, key=lambda m: (self.catalog.models[m].shape != demo_shape, m != default_model)))
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

    def _set_status(self, text: str) -> None:
        self.status_text.setText(text)

    def reset_zoom(self) -> None:
        self.canvases.reset_zoom()

    def closeEvent(self, event) -> None:
        self.save_settings()
        self.background.cancel_all()
        self.controller.shutdown()
        for timer in self.findChildren(QTimer):  # a closed window does no deferred work
            timer.stop()
        super().closeEvent(event)
