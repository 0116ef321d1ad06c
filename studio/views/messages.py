"""A non-modal message bar: errors and notes appear above the canvases, never as dialogs.

Errors stay until dismissed or replaced; notes and information fade after a few
seconds. Every message is also kept in `history` (the last 50), which tests read.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

STYLES = {
    "error": "background:#5c1f1f; color:#ffdede; border:1px solid #a33;",
    "warning": "background:#5a4a16; color:#fff3c4; border:1px solid #a88a2a;",
    "info": "background:#1f3b57; color:#dcecff; border:1px solid #3a6ea5;",
}
FADE_MS = {"error": 0, "warning": 12000, "info": 6000}  # 0 = stays until dismissed


class MessageBar(QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history: list[tuple[str, str]] = []  # (level, text)
        self.level = ""
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 3, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(close)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.dismiss)
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        self.history = (self.history + [(level, text)])[-50:]
        self.level = level
        self.label.setText(text)
        self.setStyleSheet(f"MessageBar {{{STYLES[level]} border-radius:4px;}}"
                           f"QLabel {{color:{STYLES[level].split('color:')[1].split(';')[0]};"
                           "border:none; background:transparent;}")
        self.show()
        self.timer.stop()
        if FADE_MS[level]:
            self.timer.start(FADE_MS[level])

    def error(self, text: str) -> None:
        self.show_message(text, "error")

    def warning(self, text: str) -> None:
        self.show_message(text, "warning")

    def info(self, text: str) -> None:
        self.show_message(text, "info")

    def text(self) -> str:
        return self.label.text() if self.isVisible() else ""

    def dismiss(self) -> None:
        self.timer.stop()
        self.level = ""
        self.hide()
