"""Image canvases: pyqtgraph views with a title, a metric badge and a pixel readout.

Decisions:

* Every canvas places its image on the same scene rectangle, the clean image's
  ``W × H`` (`set_extent`), whatever the image's own resolution: a 14×14 measurement
  covers the same square as its 28×28 source, so linked zoom/pan compares like with
  like and the readout converts back to each image's own pixel.
* Magnification is nearest-neighbour (pyqtgraph draws without smoothing); y points
  down, the aspect ratio is locked.
* The view is the image's, not the widget's: a canvas keeps either "fitted" (the
  whole scene rectangle, the default and Ctrl+0) or the rectangle the user zoomed or
  panned to (`view_rect`, taken from the mouse's manual range changes), and re-applies
  it whenever its view box is resized. pyqtgraph's own auto-range does not survive
  linked, aspect-locked views being squeezed to a few pixels (a splitter dragged down
  and back left the range at −990…1018), so it is not used.
* Heat maps (per-pixel std, error) use a perceptual colour map with explicit levels,
  stated in the badge, so two maps with different ranges are not mistaken for equal.
  (A colour bar inside the view would make it narrower than its linked neighbours,
  and aspect-locked linked views of different widths disagree about the range.)
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, Signal
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from studio.views.images import display_array, display_stride

BACKGROUND = "#1e1f22"
HEAT_MAP = "viridis"
HEADER_HEIGHT = 22
DISPLAY_MAX = 1024  # longest side drawn; a larger image is shown as every k-th pixel
CAPTION, STALE = "#9aa4b2", "#e0b050"  # which run a canvas shows; amber: settings changed since


class ImageCanvas(QWidget):
    """A titled image view; `hovered` reports ``"title (x, y): value"`` under the mouse."""

    hovered = Signal(str)

    def __init__(self, title: str, parent: QWidget | None = None, heat: bool = False):
        super().__init__(parent)
        self.title = title
        self.array: np.ndarray | None = None  # what is shown, (H, W[, 3]) uint8 or float
        self.size = (1, 1)  # the image's own (H, W); the array may show every k-th pixel
        self.extent = (1.0, 1.0)
        self.linked: list[ImageCanvas] = []  # canvases sharing this one's zoom (`link_to`)
        self.caption, self.stale = "", False  # which run the canvas shows (`set_caption`)
        self.title_label = QLabel(f"<b>{title}</b>")
        self.badge = QLabel("")
        self.badge.setObjectName("badge")
        self.badge.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        # the badge's text never dictates the canvas width (equal widths keep linked views equal)
        self.badge.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        header = QWidget()
        header.setFixedHeight(HEADER_HEIGHT)  # equal views: linked, aspect-locked ranges agree
        self.header = QHBoxLayout(header)
        self.header.setContentsMargins(2, 0, 2, 0)
        self.header.addWidget(self.title_label)
        self.header.addWidget(self.badge, 1)

        self.view = pg.GraphicsLayoutWidget()
        self.view.setBackground(BACKGROUND)
        self.view.ci.setContentsMargins(0, 0, 0, 0)
        self.box = self.view.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.box.disableAutoRange()
        self.view_rect: QRectF | None = None  # what the user zoomed to; None = fitted
        self.box.sigRangeChangedManually.connect(self._on_manual_range)
        self.box.sigResized.connect(lambda *_: self._apply_view())
        self.item = pg.ImageItem(axisOrder="row-major")
        self.box.addItem(self.item)
        self.placeholder = pg.TextItem("—", color="#777777", anchor=(0.5, 0.5))
        self.box.addItem(self.placeholder, ignoreBounds=True)
        self.heat = heat
        if heat:
            self.item.setColorMap(pg.colormap.get(HEAT_MAP))
        self.view.scene().sigMouseMoved.connect(self._on_mouse)
        self.before = None  # the "before" image of the split view, or None
        self.before_item = pg.ImageItem(axisOrder="row-major")
        self.split_line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#ffd24a", width=2),
                                          hoverPen=pg.mkPen("#ffffff", width=3))
        self.split_line.setToolTip("drag: before (left) | after (right)")
        self.split_line.sigPositionChanged.connect(self._show_split)

        self.caption_label = QLabel(self.view)  # over the view: the header keeps its room
        self.caption_label.setWordWrap(True)
        self.caption_label.move(3, 3)
        self.caption_label.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addWidget(header)
        layout.addWidget(self.view, 1)
        self.set_extent(1.0, 1.0)

    # -- content ----------------------------------------------------------------------
    def set_image(self, image, levels: tuple[float, float] | None = None, shown=None) -> None:
        """Show a (C, H, W) tensor, an (H, W[, C]) uint8 array or a float heat map; None clears.

        ``shown``: its display array, already made (off the GUI thread, for a large image)."""
        if image is None:
            self.array = None
            self.item.clear()
            self.placeholder.show()
            return
        heat = isinstance(image, np.ndarray) and image.dtype != np.uint8
        self.size = tuple(image.shape[:2] if isinstance(image, np.ndarray) else image.shape[-2:])
        if shown is not None:
            array = shown
        elif heat:
            k = display_stride(*self.size, DISPLAY_MAX)
            array = image[::k, ::k] if k > 1 else image
        else:
            array = display_array(image, DISPLAY_MAX)
        self.array = array
        self.placeholder.hide()
        if self.heat:
            lo, hi = levels if levels is not None else (0.0, float(array.max()) or 1.0)
            self.item.setImage(array, levels=(lo, hi))
            self.set_badge(f"{lo:.3g} – {hi:.3g}")
            self.badge.setToolTip(f"colour map {HEAT_MAP}: {lo:.3g} (dark blue) to {hi:.3g} (yellow)")
        else:
            self.item.setImage(array, levels=levels)  # None: uint8 drawn as is, no rescaling pass
        self.item.setRect(QRectF(0, 0, *self.extent))

    def set_extent(self, width: float, height: float) -> None:
        """The scene rectangle every image is drawn into (the clean image's size)."""
        changed = (float(width), float(height)) != self.extent
        self.extent = (float(width), float(height))
        self.item.setRect(QRectF(0, 0, *self.extent))
        self.placeholder.setPos(width / 2, height / 2)
        if changed:
            self.reset_zoom()

    def set_split(self, before) -> None:
        """Show ``before`` left of a draggable line and this canvas's image right of it; None: off."""
        if before is None:
            if self.before is not None:
                self.box.removeItem(self.before_item)
                self.box.removeItem(self.split_line)
            self.before = None
            return
        if self.before is None:
            self.box.addItem(self.before_item)
            self.box.addItem(self.split_line, ignoreBounds=True)
            self.split_line.setValue(self.extent[0] / 2)
        self.before = display_array(before, DISPLAY_MAX)
        self._show_split()

    def _show_split(self) -> None:
        if self.before is None:
            return
        w = self.before.shape[1]
        x = min(max(self.split_line.value(), 0.0), self.extent[0])
        columns = int(round(x / self.extent[0] * w))
        self.before_item.setImage(self.before[:, :max(columns, 1)], levels=None)
        self.before_item.setRect(QRectF(0, 0, columns * self.extent[0] / w, self.extent[1]))
        self.before_item.setVisible(columns > 0)

    def set_caption(self, caption: str = "", tip: str = "", stale: bool = False) -> None:
        """Say which run the canvas shows, on the image's top-left corner (``"run 3 ·
        ddim@vp"``); ``stale``: the settings changed since that run (amber, said)."""
        if (caption, stale, tip) == (self.caption, self.stale, self.caption_label.toolTip()):
            return  # called at every input change: a style sheet costs a re-polish
        self.caption, self.stale = caption, stale
        self.caption_label.setText(caption + (" · settings changed since" if stale else ""))
        self.caption_label.setStyleSheet(
            f"background: rgba(20, 20, 24, 190); color: {STALE if stale else CAPTION}; "
            "padding: 1px 4px; border-radius: 3px;")
        self.caption_label.setToolTip(tip)
        self._fit_caption()
        self.caption_label.setVisible(bool(caption))

    def _fit_caption(self) -> None:
        """Wrap the caption within the view's width (a narrow canvas gets more lines)."""
        label = self.caption_label
        label.ensurePolished()  # the style sheet's font and padding apply from here on
        natural = label.fontMetrics().horizontalAdvance(label.text()) + 16  # + padding, frame
        width = max(60, min(natural, self.width() - 6))
        height = label.heightForWidth(width)
        label.setFixedSize(width, height if height > 0 else label.sizeHint().height())

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._fit_caption()

    def set_badge(self, text: str) -> None:
        self.badge.setText(text)
        self.badge.setToolTip(text)

    def reset_zoom(self) -> None:
        """Fit the scene rectangle, and keep fitting it as the view resizes (until zoomed)."""
        for canvas in self._group():
            canvas.view_rect = None
        self._apply_view()

    def _apply_view(self) -> None:
        """Show the user's rectangle, or the whole image, at the view's current size."""
        if self.box.width() < 1 or self.box.height() < 1:
            return  # squeezed to nothing: keep the rectangle for when it grows again
        if self.view_rect is None:
            self.box.setRange(QRectF(0, 0, *self.extent), padding=0.02)
        else:
            self.box.setRange(self.view_rect, padding=0)

    def _on_manual_range(self, *_) -> None:
        """The user zoomed or panned (wheel, drag): keep that rectangle, in every linked view."""
        rect = QRectF(self.box.targetRect())
        for canvas in self._group():
            canvas.view_rect = rect

    def _group(self) -> list["ImageCanvas"]:
        return [self, *self.linked]

    def link_to(self, other: "ImageCanvas") -> None:
        self.box.setXLink(other.box)
        self.box.setYLink(other.box)
        group = {id(c): c for c in (self, *self.linked, other, *other.linked)}
        for canvas in group.values():
            canvas.linked = [c for c in group.values() if c is not canvas]

    # -- readout ----------------------------------------------------------------------
    def pixel_at(self, x: float, y: float) -> tuple[int, int] | None:
        """The (column, row) of this canvas's own image under scene point (x, y)."""
        if self.array is None:
            return None
        h, w = self.size
        col, row = int(np.floor(x / self.extent[0] * w)), int(np.floor(y / self.extent[1] * h))
        return (col, row) if 0 <= col < w and 0 <= row < h else None

    def readout(self, x: float, y: float) -> str:
        """The pixel's value; for an image shown as every k-th pixel, the shown one's (≈)."""
        pixel = self.pixel_at(x, y)
        if pixel is None:
            return ""
        col, row = pixel
        (h, w), (shown_h, shown_w) = self.size, self.array.shape[:2]
        value = self.array[row * shown_h // h, col * shown_w // w]
        if self.array.dtype == np.uint8:
            value = value / 255.0
        text = (f"{float(value):.3f}" if np.ndim(value) == 0
                else "(" + ", ".join(f"{float(v):.3f}" for v in value) + ")")
        return f"{self.title} ({col}, {row}): {'' if shown_h == h else '≈'}{text}"

    def _on_mouse(self, scene_pos) -> None:
        point = self.box.mapSceneToView(scene_pos)
        self.hovered.emit(self.readout(point.x(), point.y()))


class CanvasGrid(QWidget):
    """Named canvases in a grid, all sharing one zoom/pan."""

    hovered = Signal(str)

    def __init__(self, layout: list[list[str]], heat: set[str] = frozenset(),
                 parent: QWidget | None = None):
        super().__init__(parent)
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        self.canvases: dict[str, ImageCanvas] = {}
        for r, row in enumerate(layout):
            for c, title in enumerate(row):
                canvas = ImageCanvas(title, heat=title in heat)
                canvas.hovered.connect(self.hovered)
                grid.addWidget(canvas, r, c)
                self.canvases[title] = canvas
        for r in range(len(layout)):  # equal cells: linked, aspect-locked views need one shape
            grid.setRowStretch(r, 1)
        for c in range(max(len(row) for row in layout)):
            grid.setColumnStretch(c, 1)
        first, *rest = self.canvases.values()
        for canvas in rest:
            canvas.link_to(first)

    def __getitem__(self, title: str) -> ImageCanvas:
        return self.canvases[title]

    def set_extent(self, width: float, height: float) -> None:
        for canvas in self.canvases.values():
            canvas.set_extent(width, height)

    def reset_zoom(self) -> None:
        next(iter(self.canvases.values())).reset_zoom()
