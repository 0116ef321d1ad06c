"""The Degradation panel: sliders bound both ways to a `DegradationState`.

Every slider writes its field while it is dragged (so the degraded preview follows
the hand); state changes written elsewhere (a recipe, a test) move the widgets back
without echoing. The downsampling factors offered are the divisors of the image size
(a factor that does not divide it has no meaning for block averaging); grayscale is
only offered for colour images.
"""

from __future__ import annotations

from math import gcd

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QSpinBox, QVBoxLayout)
from superqt import QLabeledDoubleSlider

from studio.panels.param_form import combo

MASK_KINDS = [("off", ""), ("box (inpaint centre)", "box"), ("random pixels", "random"),
              ("right half", "half"), ("frame (keep centre)", "frame")]
MAX_FACTOR = 16


def _slider(lo: float, hi: float, decimals: int) -> QLabeledDoubleSlider:
    s = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
    s.setRange(lo, hi)
    s.setDecimals(decimals)
    s.setSingleStep(10 ** -decimals)
    return s


class DegradationPanel(QGroupBox):
    def __init__(self, state, parent=None):
        super().__init__("Degradation", parent)
        self.state = state
        self.noise = _slider(0.0, 2.0, 3)
        self.noise.setToolTip("σ_y: standard deviation of the Gaussian measurement noise, "
                              "in image units ([0, 1])")
        self.blur = _slider(0.0, 5.0, 2)
        self.blur.setToolTip("σ of the Gaussian blur in pixels (0 = no blur)")
        self.mask = combo()
        for label, _ in MASK_KINDS:
            self.mask.addItem(label)
        self.mask.setToolTip("which pixels are hidden")
        self.mask_level = _slider(0.0, 1.0, 2)
        self.mask_level.setToolTip("box/frame: side as a fraction of the image; random: "
                                   "fraction of pixels dropped; half: fraction of the width")
        self.mask_seed = QSpinBox()
        self.mask_seed.setRange(0, 2**31 - 1)
        self.mask_seed.setToolTip("seed of the random mask pattern")
        self.downsample = combo()
        self.downsample.setToolTip("block-average downsampling factor (1 = off); only "
                                   "factors that divide the image size are offered")
        self.grayscale = QCheckBox("grayscale")
        self.grayscale.setToolTip("measure the channel mean (colour images only)")
        self.measurement_seed = QSpinBox()
        self.measurement_seed.setRange(0, 2**31 - 1)
        self.measurement_seed.setToolTip("seed of the noise ε in y = A x + σ_y ε")
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.description.setStyleSheet("color: palette(mid);")

        mask_row = QHBoxLayout()
        mask_row.addWidget(self.mask, 1)
        mask_row.addWidget(QLabel("seed"))
        mask_row.addWidget(self.mask_seed)
        form = QFormLayout()
        form.addRow("noise σ_y", self.noise)
        form.addRow("blur σ", self.blur)
        form.addRow("mask", mask_row)
        form.addRow("mask level", self.mask_level)
        form.addRow("downsample ×", self.downsample)
        form.addRow("", self.grayscale)
        form.addRow("measurement seed", self.measurement_seed)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.description)

        self.set_image_shape((1, 28, 28))
        self.noise.valueChanged.connect(lambda v: setattr(state, "noise", round(v, 4)))
        self.blur.valueChanged.connect(lambda v: setattr(state, "blur", round(v, 3)))
        self.mask.currentIndexChanged.connect(lambda i: setattr(state, "mask", MASK_KINDS[i][1]))
        self.mask_level.valueChanged.connect(lambda v: setattr(state, "mask_level", round(v, 3)))
        self.mask_seed.valueChanged.connect(lambda v: setattr(state, "mask_seed", v))
        self.downsample.currentIndexChanged.connect(self._on_factor)
        self.grayscale.toggled.connect(lambda on: setattr(state, "grayscale", on))
        self.measurement_seed.valueChanged.connect(lambda v: setattr(state, "measurement_seed", v))
        state.events.all.connect(self.sync)
        self.sync()

    def set_image_shape(self, shape: tuple[int, ...]) -> None:
        """Offer the factors that divide (H, W) and grayscale only for colour images."""
        self.shape = tuple(shape)
        self.grayscale.setEnabled(shape[0] > 1)
        self.grayscale.setToolTip("measure the channel mean" if shape[0] > 1
                                  else "the image is already gray")
        self._fill_factors()
        self.sync()

    def _fill_factors(self) -> None:
        """Divisors of the image size, plus the current factor if it is not one (marked)."""
        _, h, w = self.shape
        factors = [f for f in range(1, MAX_FACTOR + 1) if gcd(h, w) % f == 0]
        self.downsample.blockSignals(True)
        self.downsample.clear()
        for f in sorted(set(factors) | {int(self.state.downsample)}):
            label = "1 (off)" if f == 1 else str(f) if f in factors else f"{f} (does not divide {h}×{w})"
            self.downsample.addItem(label, f)
        self.downsample.blockSignals(False)

    def set_description(self, text: str) -> None:
        self.description.setText(text)

    def _on_factor(self, index: int) -> None:
        if index >= 0:
            self.state.downsample = int(self.downsample.itemData(index))

    def sync(self, *_) -> None:
        """Move the widgets to the state's values without writing back."""
        s = self.state
        kinds = [kind for _, kind in MASK_KINDS]
        if self.downsample.findData(int(s.downsample)) < 0:
            self._fill_factors()
        factor_index = self.downsample.findData(int(s.downsample))
        updates = [(self.noise, lambda: self.noise.setValue(s.noise)),
                   (self.blur, lambda: self.blur.setValue(s.blur)),
                   (self.mask, lambda: self.mask.setCurrentIndex(kinds.index(s.mask) if s.mask in kinds else 0)),
                   (self.mask_level, lambda: self.mask_level.setValue(s.mask_level)),
                   (self.mask_seed, lambda: self.mask_seed.setValue(s.mask_seed)),
                   (self.downsample, lambda: self.downsample.setCurrentIndex(factor_index)),
                   (self.grayscale, lambda: self.grayscale.setChecked(s.grayscale)),
                   (self.measurement_seed, lambda: self.measurement_seed.setValue(s.measurement_seed))]
        for widget, update in updates:
            widget.blockSignals(True)
            update()
            widget.blockSignals(False)
        masked = bool(s.mask)
        self.mask_level.setEnabled(masked)
        self.mask_seed.setEnabled(s.mask == "random")
