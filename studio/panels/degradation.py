"""The Degradation panel, generated from the engine's operator rows and bound both ways
to a `DegradationState`.

No control here names an operator: `set_rows` builds one editor per row of
`engine.core.operators.degradation_rows` (σ_y, then each registered operator's
parameters in composition order) with the method forms' `ParamForm`, so a newly
registered operator gets its controls with no GUI code. Decisions:

* The rows come with the engine (`set_rows`, called once the engine is loaded, like
  the method panel's catalog); until then the panel is empty and disabled.
* Every editor writes its field while it is dragged (the degraded preview follows the
  hand). State changes written elsewhere (a recipe, a test) move only the editors of the
  fields that changed (``events.noise``, ``events.operators`` with old and new values,
  ``events.measurement_seed``), without echoing.
* An operator's first field switches it on; its other fields are enabled only while it
  is on. Where an operator says which values suit the image (`OperatorInfo.options`:
  the factors that divide the size, grayscale for colour images only), just those are
  offered; a current value outside them (from a recipe) stays, marked.
* The order of the rows is the order the operators act; the formula line below
  (`set_description`) writes A as that composition.
* Editors are reachable by field name: ``panel.editor("blur")``, or ``panel.blur`` where
  Qt defines no attribute of that name (``QWidget.mask`` is one).
"""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QSpinBox, QVBoxLayout

from studio.panels.param_form import ParamForm, choice_label

DECIMALS = 4  # a slider's float is stored rounded (no 0.30000000000000004 in recipes)


class DegradationPanel(QGroupBox):
    def __init__(self, state, parent=None):
        super().__init__("Degradation", parent)
        self.state = state
        self.rows: dict[str, dict] = {}
        self.allowed_values = lambda shape: {}  # (C, H, W) → {field: values suiting it}
        self.allowed: dict[str, list] = {}  # ... for the current image shape
        self.shape = (1, 28, 28)
        self.form = ParamForm()
        self.measurement_seed = QSpinBox()
        self.measurement_seed.setRange(0, 2**31 - 1)
        self.measurement_seed.setToolTip("seed of the noise ε in y = A x + σ_y ε")
        seed_row = QFormLayout()
        seed_row.addRow("measurement seed", self.measurement_seed)
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: palette(mid);")
        layout = QVBoxLayout(self)
        layout.addWidget(self.form)
        layout.addLayout(seed_row)
        layout.addWidget(self.description)

        self.form.changed.connect(self._on_edit)
        self.measurement_seed.valueChanged.connect(lambda v: setattr(state, "measurement_seed", v))
        state.events.noise.connect(lambda value: self._show({"noise": value}))
        state.events.operators.connect(self._on_operators)
        state.events.measurement_seed.connect(self._show_seed)
        self.setEnabled(False)

    def __getattr__(self, name: str):
        form = self.__dict__.get("form")
        if form is not None and name in form.editors:
            return form.editor(name)
        raise AttributeError(name)

    def editor(self, name: str):
        return self.form.editor(name)

    # -- building -------------------------------------------------------------------------
    def set_rows(self, rows: list[dict], allowed_values) -> None:
        """Build the editors from `degradation_rows`; ``allowed_values(shape)`` is
        `engine.core.operators.allowed_values`."""
        self.rows = {row["name"]: row for row in rows}
        self.allowed_values = allowed_values
        self.allowed = allowed_values(self.shape)
        self.form.set_fields([self._offered(row) for row in rows], {})
        self.setEnabled(True)
        self.set_image_shape(self.shape)

    def _offered(self, row: dict) -> dict:
        """A row whose values the image restricts becomes a choice among them."""
        allowed = self.allowed.get(row["name"])
        if allowed is None or isinstance(row["default"], bool):
            return row
        return {**row, "choices": allowed}

    def set_image_shape(self, shape: tuple[int, ...]) -> None:
        """Offer the values that suit images of this (C, H, W); then show the state."""
        self.shape = tuple(shape)
        self.allowed = self.allowed_values(self.shape)
        for name, allowed in self.allowed.items():
            row = self.rows[name]
            widget = self.form.editor(name)
            if isinstance(widget, QCheckBox):
                widget.setEnabled(True in allowed)
                widget.setToolTip(row["help"] if True in allowed else
                                  f"not available for a {shape[0]}-channel image")
            elif isinstance(widget, QComboBox):
                self._fill_choices(name, allowed)
        self.sync()

    def _fill_choices(self, name: str, allowed: list) -> None:
        current = self.state.value(name)
        choices = sorted(set(allowed) | {current}, key=str if isinstance(current, str) else None)
        _, h, w = self.shape
        labels = [choice_label(c) if c in allowed else f"{c} (not for {h}×{w})" for c in choices]
        self.form.set_choices(name, choices, labels)

    # -- widgets → state --------------------------------------------------------------------
    def _on_edit(self, name: str, value) -> None:
        if isinstance(value, float):
            value = round(value, DECIMALS)
        if name == "noise":
            self.state.noise = value
        else:
            self.state.set_value(name, value)

    # -- state → widgets --------------------------------------------------------------------
    def _on_operators(self, new: dict, old: dict) -> None:
        self._show({name: self.state.value(name) for name in set(new) | set(old)
                    if new.get(name) != old.get(name) and name in self.rows})

    def _show(self, values: dict) -> None:
        """Move the editors of these fields to their values without writing back."""
        if not self.rows:
            return
        for name, value in values.items():
            allowed = self.allowed.get(name)
            widget = self.form.editor(name)
            if allowed is not None and isinstance(widget, QComboBox) and widget.findData(value) < 0:
                self._fill_choices(name, allowed)
            self.form.set_value(name, value)
        self._enable_fields({self.rows[name]["operator"] for name in values})

    def _enable_fields(self, operators: set[str]) -> None:
        """An operator's later fields are enabled only while its switch is on."""
        switches = {row["operator"]: row for row in self.rows.values() if row["switch"]}
        for row in self.rows.values():
            if row["operator"] in operators and not row["switch"] and row["operator"] in switches:
                switch = switches[row["operator"]]
                self.form.editor(row["name"]).setEnabled(
                    self.state.value(switch["name"]) != switch["default"])

    def _show_seed(self, seed: int) -> None:
        self.measurement_seed.blockSignals(True)
        self.measurement_seed.setValue(seed)
        self.measurement_seed.blockSignals(False)

    def sync(self) -> None:
        """Show every field of the state (after the rows or the image shape changed)."""
        if not self.rows:
            return
        self._show({name: self.state.noise if name == "noise" else self.state.value(name)
                    for name in self.rows})
        self._show_seed(self.state.measurement_seed)

    def set_description(self, text: str) -> None:
        self.description.setText(text)
