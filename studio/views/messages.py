"""A non-modal message bar: errors and notes appear above the canvases, never as dialogs.

Errors stay until dismissed or replaced; notes and information fade after a few
seconds. Every message is also kept in `history` (the last 50), which tests read.

Long messages are cut to a readable length (`MAX_CHARS`, `MAX_LINES`): a label laying
out megabytes of wrapped text stalls the GUI thread and crashed the process (a
2 MB message ended it with a segmentation fault). The full text goes to the log
(logger ``studio``) and stays one click away: "Details…" opens it in a read-only
text view, which handles any length. `history` holds the shortened text.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (QDialog, QFrame, QHBoxLayout, QLabel, QPlainTextEdit,
                               QToolButton, QVBoxLayout)

STYLES = {
    "error": "background:#5c1f1f; color:#ffdede; border:1px solid #a33;",
    "warning": "background:#5a4a16; color:#fff3c4; border:1px solid #a88a2a;",
    "info": "background:#1f3b57; color:#dcecff; border:1px solid #3a6ea5;",
}
FADE_MS = {"error": 0, "warning": 12000, "info": 6000}  # 0 = stays until dismissed
MAX_CHARS = 600  # characters of a message shown on the bar
MAX_LINES = 6  # lines of a message shown on the bar
LOG = logging.getLogger("studio")


def shorten(text: str) -> str:
    """``text`` cut to `MAX_LINES` lines and `MAX_CHARS` characters, saying how much is left."""
    lines = text.splitlines() or [""]
    short = "\n".join(lines[:MAX_LINES])
    if len(short) > MAX_CHARS:
        short = short[:MAX_CHARS].rstrip()
    if len(short) < len(text.rstrip()):
        short += f" … ({len(text) - len(short)} more characters: see Details)"
    return short


class MessageBar(QFrame):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.history: list[tuple[str, str]] = []  # (level, text as shown)
        self.level = ""
        self.full_text = ""  # the whole current message (the details view shows it)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QToolButton()
        self.details.setText("Details…")
        self.details.setAutoRaise(True)
        self.details.setToolTip("the whole message")
        self.details.clicked.connect(self.show_details)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 3, 3, 3)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.details)
        layout.addWidget(close)
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.timeout.connect(self.dismiss)
        self.details_view: QDialog | None = None
        self.hide()

    def show_message(self, text: str, level: str = "info") -> None:
        text = str(text)
        short = shorten(text)
        self.full_text = text
        if short != text:
            LOG.info("%s message (shown shortened): %s", level, text)
        self.history = (self.history + [(level, short)])[-50:]
        self.level = level
        self.label.setText(short)
        self.details.setVisible(short != text)
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

    def show_details(self) -> None:
        """The whole current message in a non-modal, read-only text view."""
        if self.details_view is None:
            self.details_view = QDialog(self)
            self.details_view.setWindowTitle("Message")
            self.details_view.resize(720, 420)
            view = QPlainTextEdit()
            view.setReadOnly(True)
            view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
            QVBoxLayout(self.details_view).addWidget(view)
            self.details_view.view = view
        self.details_view.view.setPlainText(self.full_text)
        self.details_view.show()

    def dismiss(self) -> None:
        self.timer.stop()
        self.level = ""
        self.hide()
