"""The Method panel: method and model pickers, the generated parameter form, seed, n, run.

Everything a method takes comes from the registry (`studio.catalog.Catalog`): the
pickers list registered methods and the image models each accepts; the form is built
from the parameter dataclass. Widgets write `MethodState`; state changes made
elsewhere (a recipe) rebuild the form. "Live" re-runs the method shortly after any
input changes (latest wins on the engine thread).

What can restore the current degradation (issue 15): the panel watches the degradation
(`watch_degradation`) and greys the methods that no model can restore it with and the
models that cannot, each with the registry's reason as tooltip (`Catalog.problem`,
marked `MARK_DELAY_MS` after the last change, so a drag is not slowed); a calm line
under the summary says why the current pair cannot and what to pick instead
(`Catalog.advice`). Greyed entries stay selectable: a user may pick the method first and
then the degradation. Live does not start a pair that cannot run (`refuses_live_run`,
asked by the window); an explicit Run does, and the engine's error says the same.

Methods with a latent z (`MethodInfo.latent`) get the latent control: a z seed and a
slider that moves every sample's z along the great circle towards the z of
``z seed + k`` (`engine.core.rng.SampleRNG.latent`); with Live on, dragging re-runs.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QGridLayout, QGroupBox,
                               QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout)
from superqt import QLabeledDoubleSlider

from studio.panels.param_form import ParamForm, combo
from studio.state import MAX_SAMPLES

MARK_DELAY_MS = 150  # the pickers are marked this long after the degradation rests
NOTE_STYLE = "color: #c9a04a;"  # amber, calm: a hint, not an error


class MethodPanel(QGroupBox):
    run_requested = Signal()
    stop_requested = Signal(bool)  # keep the current x̂0
    pause_requested = Signal()

    def __init__(self, state, parent=None):
        super().__init__("Method", parent)
        self.state = state
        self.catalog = None
        self._form_method = None  # the method the parameter form was built for
        self.method = combo()
        self.model = combo()
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setStyleSheet("font-style: italic;")
        self.note = QLabel()  # why the current pair cannot restore the degradation
        self.note.setWordWrap(True)
        self.note.setStyleSheet(NOTE_STYLE)
        self.note.hide()
        self._degradation_state = None
        self._channels = lambda: 1
        self.mark_timer = QTimer(self)
        self.mark_timer.setSingleShot(True)
        self.mark_timer.setInterval(MARK_DELAY_MS)
        self.mark_timer.timeout.connect(self.mark_pickers)
        self.form = ParamForm()
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("sample k uses seed + k (seed 0 is a seed like any other)")
        self.n = QSpinBox()
        self.n.setRange(1, MAX_SAMPLES)
        self.n.setToolTip("number of samples drawn for this input (the diversity gallery)")
        self.nfe_label = QLabel()
        self.live = QCheckBox("Live")
        self.live.setChecked(True)
        self.live.setToolTip("re-run automatically shortly after any input changes")
        self.run_button = QPushButton("Run")
        self.run_button.setToolTip("Run the method (Ctrl+R)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Cancel after the current step (Esc)")
        self.keep_button = QPushButton("Stop && keep estimate")
        self.keep_button.setToolTip("Stop after the current step and keep its estimate x̂0 "
                                    "as the result (Ctrl+K)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("Pause or resume the running method (Ctrl+P)")
        self.latent_box = QGroupBox("latent z")
        self.latent_seed = QSpinBox()
        self.latent_seed.setRange(0, 2**31 - 1)
        self.latent_seed.setToolTip("seed of the second latent: sample k moves towards the z "
                                    "of seed (z seed + k)")
        self.latent_mix = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.latent_mix.setRange(0.0, 1.0)
        self.latent_mix.setDecimals(2)
        self.latent_mix.setSingleStep(0.01)
        latent = QFormLayout(self.latent_box)
        latent.addRow("z seed", self.latent_seed)
        latent.addRow("own z → z seed", self.latent_mix)

        pickers = QFormLayout()
        pickers.addRow("method", self.method)
        pickers.addRow("model", self.model)
        seeds = QHBoxLayout()
        seeds.addWidget(QLabel("seed"))
        seeds.addWidget(self.seed, 1)
        seeds.addWidget(QLabel("samples"))
        seeds.addWidget(self.n, 1)
        buttons = QGridLayout()
        buttons.addWidget(self.run_button, 0, 0)
        buttons.addWidget(self.live, 0, 1)
        buttons.addWidget(self.stop_button, 1, 0)
        buttons.addWidget(self.keep_button, 1, 1)
        buttons.addWidget(self.pause_button, 2, 0)
        layout = QVBoxLayout(self)
        layout.addLayout(pickers)
        layout.addWidget(self.summary)
        layout.addWidget(self.note)
        layout.addWidget(self.form)
        layout.addWidget(self.nfe_label)
        layout.addLayout(seeds)
        layout.addWidget(self.latent_box)
        layout.addLayout(buttons)

        self.method.currentIndexChanged.connect(self._on_method)
        self.model.currentIndexChanged.connect(self._on_model)
        self.form.changed.connect(lambda name, value: state.set_param(name, value))
        self.seed.valueChanged.connect(lambda v: setattr(state, "seed", v))
        self.n.valueChanged.connect(lambda v: setattr(state, "n", v))
        self.latent_seed.valueChanged.connect(lambda v: setattr(state, "latent_seed", v))
        self.latent_mix.valueChanged.connect(lambda v: setattr(state, "latent_mix", round(v, 2)))
        self.run_button.clicked.connect(self.run_requested)
        self.stop_button.clicked.connect(lambda: self.stop_requested.emit(False))
        self.keep_button.clicked.connect(lambda: self.stop_requested.emit(True))
        self.pause_button.clicked.connect(self.pause_requested)
        state.events.all.connect(self.sync)
        self.set_busy(False)
        self.setEnabled(False)

    def set_catalog(self, catalog) -> None:
        self.catalog = catalog
        self.method.blockSignals(True)
        self.method.clear()
        for name, info in catalog.methods.items():
            self.method.addItem(f"{name} — {info.family}", name)
            self.method.setItemData(self.method.count() - 1, info.summary, 3)  # ToolTipRole
        self.method.blockSignals(False)
        self.setEnabled(True)
        self.sync()
        self.mark_timer.start()

    def set_busy(self, busy: bool) -> None:
        self.stop_button.setEnabled(busy)
        self.keep_button.setEnabled(busy)
        self.pause_button.setEnabled(busy)
        if not busy:
            self.set_paused(False)

    def set_paused(self, paused: bool) -> None:
        self.pause_button.setChecked(paused)
        self.pause_button.setText("Resume" if paused else "Pause")

    # -- widgets → state ----------------------------------------------------------------
    def _on_method(self, index: int) -> None:
        name = self.method.itemData(index)
        if name is None or name == self.state.method:
            return
        models = self.catalog.image_models_for(name)
        keep = self.state.model if self.state.model in models else None
        fields = {row["name"] for row in self.catalog.params(name)}
        self.state.params = {k: v for k, v in self.state.params.items() if k in fields}
        self.state.model = keep or (models[0] if models else None)
        self.state.method = name

    def _on_model(self, index: int) -> None:
        model = self.model.itemData(index)
        if index >= 0 and model != self.state.model:
            self.state.model = model

    # -- state → widgets ----------------------------------------------------------------
    def sync(self, *_) -> None:
        if self.catalog is None or self.state.method not in self.catalog.methods:
            return
        s, info = self.state, self.catalog.methods[self.state.method]
        self.method.blockSignals(True)
        self.method.setCurrentIndex(self.method.findData(s.method))
        self.method.blockSignals(False)
        models = self.catalog.image_models_for(s.method)
        self.model.blockSignals(True)
        self.model.clear()
        for name in models:
            self.model.addItem(name, name)
        if s.model and s.model not in models:  # from a recipe; the job will say why it fails
            self.model.addItem(f"{s.model} (not available)", s.model)
        if not models and not s.model:
            self.model.addItem("(no prior needed)", None)
        self.model.setCurrentIndex(max(self.model.findData(s.model), 0))
        self.model.setEnabled(info.needs_prior)
        self.model.blockSignals(False)
        self.summary.setText(info.summary)
        rows = self.catalog.params(s.method)
        if set(self.form.rows) != {r["name"] for r in rows} or self._form_method != s.method:
            self.form.set_fields(rows, s.params)
            self._form_method = s.method
        else:
            self.form.set_values(s.params)
        for widget, value in ((self.seed, s.seed), (self.n, s.n), (self.latent_seed, s.latent_seed),
                              (self.latent_mix, s.latent_mix)):
            widget.blockSignals(True)
            widget.setValue(value)
            widget.blockSignals(False)
        self.latent_box.setVisible(info.latent is not None)
        self.latent_mix.setToolTip(f"moves each sample's {info.latent or 'latent'} from its own "
                                   "draw (0) along a spherical interpolation to the draw of "
                                   "z seed + k (1). A deterministic sampler restoring from the "
                                   "measurement's own noise level draws none: nothing to move.")
        self.nfe_label.setText(self._nfe_text(info))
        self._mark_models(self.degradation())

    # -- what can restore the current degradation ----------------------------------------
    def watch_degradation(self, state, channels=lambda: 1) -> None:
        """Mark the pickers for a `DegradationState`'s values; ``channels()`` gives the
        image's channel count (the model-free methods' operators depend on it)."""
        self._degradation_state, self._channels = state, channels
        state.events.all.connect(lambda *_: self.mark_timer.start())
        self.mark_timer.start()

    def degradation(self):
        """The watched degradation, or None (none watched, or impossible values)."""
        from engine.core.step import BadInputError

        if self._degradation_state is None:
            return None
        try:
            return self._degradation_state.degradation()
        except BadInputError:
            return None

    def method_problem(self, method: str, problem) -> str | None:
        """Why no model can restore the degradation with ``method`` (its first model's
        reason), or None when one can; ``problem`` is a `Catalog.verdicts` function."""
        if not self.catalog.methods[method].needs_prior:
            return problem(method, None)
        first = None
        for model in self.catalog.image_models_for(method):  # stops at the first that can
            reason = problem(method, model)
            if reason is None:
                return None
            first = first or reason
        return first

    def mark_pickers(self) -> None:
        """Grey the methods and models that cannot restore the degradation; say why."""
        if self.catalog is None:
            return
        degradation = self.degradation()
        problem = self.catalog.verdicts(degradation, self._channels()) if degradation is not None else None
        for i in range(self.method.count()):
            name = self.method.itemData(i)
            reason = self.method_problem(name, problem) if problem is not None else None
            self._mark(self.method, i, reason, self.catalog.methods[name].summary)
        self._mark_models(degradation)

    def _mark_models(self, degradation) -> None:
        if self.catalog is None or degradation is None:
            self.note.hide()
            return
        method = self.state.method
        if method not in self.catalog.methods:
            return
        problem = self.catalog.verdicts(degradation, self._channels())
        for i in range(self.model.count()):
            model = self.model.itemData(i)
            reason = problem(method, model) if model in self.catalog.models else None
            self._mark(self.model, i, reason, "")
        self._show_note(degradation)

    def _mark(self, combo, index: int, reason: str | None, tip: str) -> None:
        grey = self.palette().color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        combo.setItemData(index, None if reason is None else grey, Qt.ItemDataRole.ForegroundRole)
        text = tip if reason is None else f"{tip}\n\ncannot restore the current degradation: {reason}"
        combo.setItemData(index, text.strip() or None, Qt.ItemDataRole.ToolTipRole)

    def _show_note(self, degradation) -> str | None:
        """The calm line under the summary: why the current pair cannot restore, what instead."""
        s = self.state
        advice = None
        if degradation is not None and s.method in self.catalog.methods and \
                (s.model in self.catalog.models or not self.catalog.methods[s.method].needs_prior):
            advice = self.catalog.advice(s.method, s.model, degradation, self._channels())
        self.note.setText(f"Cannot restore this: {advice}." if advice else "")
        self.note.setVisible(advice is not None)
        return advice

    def refuses_live_run(self) -> bool:
        """True (and the calm line says why) when the current pair cannot restore the
        current degradation: Live then starts nothing."""
        if self.catalog is None:
            return False
        return self._show_note(self.degradation()) is not None

    def _nfe_text(self, info) -> str:
        from engine.core.registry import make_params
        from engine.core.step import BadInputError

        try:
            model = self.catalog.models.get(self.state.model) if self.catalog else None
            nfe = info.predict_nfe(make_params(info.params, self.state.params), model)
        except BadInputError as err:
            return f"<span style='color:#e06c6c'>{err}</span>"
        per = "network evaluations per sample" if info.needs_prior else "no network"
        return f"NFE: {nfe} ({per})" if info.needs_prior else f"NFE: 0 ({per})"
