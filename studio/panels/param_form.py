"""A parameter form generated from a method's parameter dataclass (no per-method GUI code).

Input: `engine.core.registry.describe_params` rows (name, type, default, lo, hi, help,
choices, log). One editor per row:

* ``choices`` → a combo box (item data = the value, "" shown as "off"); ``bool`` → a
  check box; ``int`` → a spin box;
* ``float`` with both bounds → a labelled slider, on a log scale when ``log`` is set
  (`LogSlider`: the slider moves the exponent, the text box takes any value in range);
* anything else → a line edit.

The help text, range (with ``units``) and default are every editor's tooltip; the label
names the units. `changed(name, value)` is emitted on every edit (while dragging too);
`set_values`, `set_value` and `set_choices` never emit.
"""

from __future__ import annotations

import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout,
                               QLabel, QLineEdit, QSlider, QSpinBox, QWidget)
from superqt import QLabeledDoubleSlider

INT_LIMIT = 2**31 - 1
LOG_STEPS = 1000
LABELS = {"nfe": "NFE"}


def combo(min_chars: int = 10) -> QComboBox:
    """A combo box that does not widen its panel to fit its longest entry."""
    box = QComboBox()
    box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    box.setMinimumContentsLength(min_chars)
    return box


def pretty(name: str, units: str = "") -> str:
    label = LABELS.get(name, name.replace("_", " "))
    return f"{label} ({units})" if units else label


def choice_label(value) -> str:
    return "off" if value == "" else str(value)


def tooltip(row: dict) -> str:
    lines = [row["help"]] if row.get("help") else []
    if row.get("choices"):
        lines.append("one of: " + ", ".join(map(str, row["choices"])))
    elif row.get("lo") is not None or row.get("hi") is not None:
        lo = "−∞" if row.get("lo") is None else f"{row['lo']:g}"
        hi = "∞" if row.get("hi") is None else f"{row['hi']:g}"
        units = f" {row['units']}" if row.get("units") else ""
        lines.append(f"range [{lo}, {hi}]{units}" + (" (log scale)" if row.get("log") else ""))
    lines.append(f"default {row['default']!r}")
    return "\n".join(lines)


class LogSlider(QWidget):
    """A positive float on a log scale: slider over log10(value) plus an editable value."""

    valueChanged = Signal(float)

    def __init__(self, lo: float, hi: float, parent=None):
        super().__init__(parent)
        self.lo, self.hi = math.log10(lo), math.log10(hi)
        self._value = 10**self.lo
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, LOG_STEPS)
        self.edit = QLineEdit()
        self.edit.setValidator(QDoubleValidator(lo, hi, 12))
        self.edit.setFixedWidth(72)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.edit)
        self.slider.valueChanged.connect(self._from_slider)
        self.edit.editingFinished.connect(self._from_text)

    def value(self) -> float:
        return self._value

    def setValue(self, value: float) -> None:
        self._value = float(min(max(value, 10**self.lo), 10**self.hi))
        self.slider.blockSignals(True)
        self.slider.setValue(round((math.log10(self._value) - self.lo) / (self.hi - self.lo) * LOG_STEPS))
        self.slider.blockSignals(False)
        self.edit.setText(f"{self._value:.4g}")

    def _from_slider(self, position: int) -> None:
        value = 10 ** (self.lo + (self.hi - self.lo) * position / LOG_STEPS)
        self._value = float(f"{value:.3g}")
        self.edit.setText(f"{self._value:.4g}")
        self.valueChanged.emit(self._value)

    def _from_text(self) -> None:
        try:
            value = float(self.edit.text())
        except ValueError:
            return
        if value != self._value:
            self.setValue(value)
            self.valueChanged.emit(self._value)


def _editor(row: dict) -> tuple[QWidget, object, object]:
    """(widget, getter, signal) for one parameter row."""
    kind, lo, hi = row["type"], row.get("lo"), row.get("hi")
    if row.get("choices"):
        w = combo()
        for choice in row["choices"]:
            w.addItem(choice_label(choice), choice)
        return w, w.currentData, w.currentIndexChanged
    if kind == "bool":
        w = QCheckBox()
        return w, w.isChecked, w.toggled
    if kind == "int":
        w = QSpinBox()
        w.setRange(int(lo) if lo is not None else -INT_LIMIT, int(hi) if hi is not None else INT_LIMIT)
        w.setAccelerated(True)
        return w, w.value, w.valueChanged
    if kind == "float" and lo is not None and hi is not None:
        if row.get("log") and lo > 0:
            w = LogSlider(lo, hi)
            return w, w.value, w.valueChanged
        w = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        w.setRange(lo, hi)
        w.setDecimals(max(2, 3 - int(math.floor(math.log10(max(hi - lo, 1e-9))))))
        return w, w.value, w.valueChanged
    if kind == "float":
        w = QDoubleSpinBox()
        w.setRange(lo if lo is not None else -1e12, hi if hi is not None else 1e12)
        w.setDecimals(4)
        return w, w.value, w.valueChanged
    w = QLineEdit()
    return w, w.text, w.editingFinished


def _set(widget: QWidget, row: dict, value) -> None:
    kind = type(row["default"])
    try:  # values from a hand-written recipe may be strings; the job validates them again
        value = value if isinstance(value, kind) else kind(value)
    except (TypeError, ValueError):
        value = row["default"]
    if isinstance(widget, QComboBox):
        widget.setCurrentIndex(max(widget.findData(value), 0))
    elif isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QLineEdit):
        widget.setText(str(value))
    else:
        widget.setValue(value)


class ParamForm(QWidget):
    changed = Signal(str, object)  # name, value

    def __init__(self, parent=None):
        super().__init__(parent)
        self.layout_ = QFormLayout(self)
        self.layout_.setContentsMargins(0, 0, 0, 0)
        self.layout_.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.rows: dict[str, dict] = {}
        self.editors: dict[str, tuple[QWidget, object]] = {}

    def set_fields(self, rows: list[dict], values: dict) -> None:
        """Rebuild the form for a method's parameter rows, showing ``values`` (else defaults)."""
        while self.layout_.rowCount():
            self.layout_.removeRow(0)
        self.rows = {row["name"]: row for row in rows}
        self.editors = {}
        for row in sorted(rows, key=lambda r: r["name"] != "nfe"):  # NFE first
            widget, getter, signal = _editor(row)
            widget.setToolTip(tooltip(row))
            label = QLabel(pretty(row["name"], row.get("units", "")))
            label.setToolTip(tooltip(row))
            self.layout_.addRow(label, widget)
            self.editors[row["name"]] = (widget, getter)
            signal.connect(lambda *_, name=row["name"]: self._emit(name))
        if not rows:
            self.layout_.addRow(QLabel("<i>no parameters</i>"))
        self.set_values(values)

    def set_values(self, values: dict) -> None:
        for name, row in self.rows.items():
            self.set_value(name, values.get(name, row["default"]))

    def set_value(self, name: str, value) -> None:
        widget = self.editors[name][0]
        widget.blockSignals(True)
        _set(widget, self.rows[name], value)
        widget.blockSignals(False)

    def set_choices(self, name: str, choices: list, labels: list[str] | None = None) -> None:
        """Offer these values in a field's combo box, keeping its current value."""
        widget, getter = self.editors[name]
        current = getter()
        widget.blockSignals(True)
        widget.clear()
        for k, choice in enumerate(choices):
            widget.addItem(labels[k] if labels else choice_label(choice), choice)
        _set(widget, self.rows[name], current)
        widget.blockSignals(False)

    def values(self) -> dict:
        return {name: getter() for name, (_, getter) in self.editors.items()}

    def editor(self, name: str) -> QWidget:
        return self.editors[name][0]

    def _emit(self, name: str) -> None:
        self.changed.emit(name, self.editors[name][1]())
