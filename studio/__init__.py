"""Restoration Studio: the Qt desktop application over `engine` (DESIGN §1, §6).

The window is a thin view of a Qt-free `studio.state.StudioState`; one background
thread (`studio.worker`) runs every engine job. ``python -m studio`` starts it.
"""

import os

os.environ.setdefault("QT_API", "pyside6")  # superqt and pyqtgraph use the same binding
os.environ.setdefault("PYQTGRAPH_QT_LIB", "PySide6")
