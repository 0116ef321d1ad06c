"""The diversity gallery: all N samples of one input, their mean and spread.

The gallery names the run it shows (`set_caption`, amber once the settings changed
since). Each sample is a tile with its PSNR/SSIM against the clean image; clicking a tile
shows that sample on the Result canvas (`sample_clicked`). Beside the tiles: the
sample mean (the MMSE estimate when the samples are posterior draws), the per-pixel
standard deviation as a heat map with its colour bar, and the diversity score.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem,
                               QVBoxLayout, QWidget)

from studio.views.canvas import CAPTION, STALE, ImageCanvas
from studio.views.images import pixmap

TILE = 64


EXACT_DB = 100.0  # PSNR above this is float round-off of an exact match


def format_psnr(psnr: float) -> str:
    return f"≥{EXACT_DB:.0f} dB" if psnr >= EXACT_DB else f"{psnr:.1f} dB"


def format_metrics(psnr: float | None, ssim: float | None) -> str:
    if psnr is None:
        return ""
    return f"PSNR {format_psnr(psnr)}" + ("" if ssim is None else f" · SSIM {ssim:.3f}")


class DiversityView(QWidget):
    sample_clicked = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.tiles = QListWidget()
        self.tiles.setViewMode(QListView.ViewMode.IconMode)
        self.tiles.setIconSize(QSize(TILE, TILE))
        self.tiles.setGridSize(QSize(TILE + 52, TILE + 38))
        self.tiles.setResizeMode(QListView.ResizeMode.Adjust)
        self.tiles.setMovement(QListView.Movement.Static)
        self.tiles.setWordWrap(True)
        self.tiles.currentRowChanged.connect(self._on_row)
        self.mean_canvas = ImageCanvas("mean")
        self.mean_canvas.setToolTip("the mean of the samples (the MMSE estimate for posterior samples)")
        self.std_canvas = ImageCanvas("std", heat=True)
        self.std_canvas.setToolTip("per-pixel standard deviation across the samples")
        self.std_canvas.link_to(self.mean_canvas)
        self._text = ""  # the summary of the samples shown
        self.summary = QLabel("Run a method to fill the gallery.")
        self.summary.setWordWrap(True)

        side = QVBoxLayout()
        maps = QHBoxLayout()
        maps.addWidget(self.mean_canvas)
        maps.addWidget(self.std_canvas)
        side.addLayout(maps, 1)
        side.addWidget(self.summary)
        layout = QHBoxLayout(self)
        layout.addWidget(self.tiles, 3)
        layout.addLayout(side, 2)

    @property
    def count(self) -> int:
        return self.tiles.count()

    def clear(self) -> None:
        self.tiles.clear()
        self.mean_canvas.set_image(None)
        self.std_canvas.set_image(None)
        self.set_caption("")
        self.summary.setText("Run a method to fill the gallery.")

    def set_caption(self, caption: str, tip: str = "", stale: bool = False) -> None:
        """Say which run the gallery shows (``"run 3 · ddim@vp"``; amber when ``stale``)."""
        for canvas in (self.mean_canvas, self.std_canvas):
            canvas.set_caption(caption, tip, stale)
        self.tiles.setToolTip(tip)
        if caption and self.count:
            colour = STALE if stale else CAPTION
            self.summary.setText(f"<span style='color:{colour}'>{caption}</span>: {self._text}")
            self.summary.setToolTip(tip)

    def set_outcome(self, outcome) -> None:
        """Fill from a `studio.worker.Outcome`."""
        result = outcome.result
        self.tiles.blockSignals(True)
        self.tiles.clear()
        for k, sample in enumerate(result.samples):
            psnr = outcome.sample_psnr[k] if outcome.sample_psnr else None
            ssim = outcome.sample_ssim[k] if outcome.sample_ssim else None
            text = f"#{k}" + ("" if psnr is None else f"\n{format_psnr(psnr)}") + \
                ("" if ssim is None else f" · {ssim:.3f}")
            item = QListWidgetItem(QIcon(pixmap(sample, TILE)), text)
            item.setToolTip(f"sample {k} (seed {result.recipe['seed'] + k})\n"
                            + format_metrics(psnr, ssim))
            item.setTextAlignment(Qt.AlignmentFlag.AlignHCenter)
            self.tiles.addItem(item)
        self.tiles.blockSignals(False)
        h, w = result.samples.shape[-2:]
        for canvas in (self.mean_canvas, self.std_canvas):
            canvas.set_extent(w, h)
        self.mean_canvas.set_image(result.mean)
        std_max = float(outcome.std_map.max())
        self.std_canvas.set_image(outcome.std_map, levels=(0.0, max(std_max, 1e-3)))
        self._text = self._summary(outcome)
        self.summary.setText(self._text)

    @staticmethod
    def _summary(outcome) -> str:
        m = outcome.result.metrics
        parts = [f"{len(outcome.result.samples)} samples"]
        if "diversity" in m:
            parts.append(f"diversity {m['diversity']:.4f}")
        parts.append(f"mean per-pixel std {float(outcome.std_map.mean()):.4f}")
        if outcome.sample_psnr:
            parts.append(f"mean of samples: {format_metrics(m.get('psnr_mean', m.get('psnr')), m.get('ssim_mean', m.get('ssim')))}")
        if outcome.stopped:
            parts.append("(stopped early: current x̂0 kept)")
        return " · ".join(parts)

    def _on_row(self, row: int) -> None:
        if row >= 0:
            self.sample_clicked.emit(row)
