"""The Source panel: the demo gallery, Open…, and drawing a source image from a model.

The panel only asks; the main window does (loading a file can fail, and failures go to
the message bar while the current image stays). The line under the gallery always
says where the current image came from and, when the chosen model needs another
size or channel count, what conversion was applied.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import (QGroupBox, QHBoxLayout, QLabel, QListView, QListWidget,
                               QListWidgetItem, QPushButton, QSpinBox, QVBoxLayout)

from studio.panels.param_form import combo
from studio.views.images import pixmap

ICON = 40


class SourcePanel(QGroupBox):
    demo_chosen = Signal(int)
    open_requested = Signal()
    draw_requested = Signal(str, int)  # model, seed

    def __init__(self, parent=None):
        super().__init__("Source", parent)
        self.gallery = QListWidget()
        self.gallery.setViewMode(QListView.ViewMode.IconMode)
        self.gallery.setIconSize(QSize(ICON, ICON))
        self.gallery.setGridSize(QSize(ICON + 6, ICON + 6))
        self.gallery.setResizeMode(QListView.ResizeMode.Adjust)
        self.gallery.setMovement(QListView.Movement.Static)
        self.gallery.setFixedHeight(2 * (ICON + 6) + 8)
        self.gallery.setToolTip("Demo images (Fashion-MNIST test set); click to restore one")
        self.gallery.itemClicked.connect(lambda item: self.demo_chosen.emit(self.gallery.row(item)))

        self.open_button = QPushButton("Open image…")
        self.open_button.setToolTip("PNG, JPEG, TIFF or BMP; you can also drop a file on the window")
        self.open_button.clicked.connect(self.open_requested)
        self.draw_model = combo()
        self.draw_model.setToolTip("a model to draw a new source image from")
        self.draw_seed = QSpinBox()
        self.draw_seed.setRange(0, 2**31 - 1)
        self.draw_seed.setToolTip("seed of the drawn sample")
        self.draw_button = QPushButton("Draw")
        self.draw_button.setToolTip("Generate a source image with the chosen model "
                                    "(runs on the engine thread)")
        self.draw_button.clicked.connect(
            lambda: self.draw_requested.emit(self.draw_model.currentText(), self.draw_seed.value()))
        self.info = QLabel("Loading the engine…")
        self.info.setWordWrap(True)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #d9a441;")
        self.note.hide()

        draw = QHBoxLayout()
        draw.addWidget(QLabel("or draw from"))
        draw.addWidget(self.draw_model, 1)
        draw.addWidget(QLabel("seed"))
        draw.addWidget(self.draw_seed)
        draw.addWidget(self.draw_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.gallery)
        layout.addLayout(draw)
        layout.addWidget(self.open_button)
        layout.addWidget(self.info)
        layout.addWidget(self.note)

    def set_demo_images(self, images, labels: list[str]) -> None:
        self.gallery.clear()
        for k, (image, label) in enumerate(zip(images, labels)):
            item = QListWidgetItem(QIcon(pixmap(image, ICON)), "")
            item.setToolTip(f"demo:{k} — {label}")
            self.gallery.addItem(item)

    def set_draw_models(self, models: list[str]) -> None:
        self.draw_model.clear()
        self.draw_model.addItems(models)
        self.draw_button.setEnabled(bool(models))

    def set_source(self, name: str, shape: tuple[int, ...], note: str) -> None:
        channels, h, w = shape
        self.info.setText(f"<b>{name}</b> · {w}×{h}, {channels} channel{'s' * (channels != 1)}")
        self.note.setText(note)
        self.note.setVisible(bool(note))
        if name.startswith("demo:"):
            self.gallery.setCurrentRow(int(name[5:]))
        else:
            self.gallery.clearSelection()
