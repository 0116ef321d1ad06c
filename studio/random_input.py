"""Random user input for the real window: what a curious new user does, reproducibly.

`RandomUser(window, seed)` performs one action at a time, each drawn with a seeded
`random.Random` from what is on the window at that moment: move a slider (the value a
drag emits), set a spin box, pick a combo box entry, toggle a check box, press a
button, pick a demo image or a gallery tile, switch a tab. `studio.bench` drives it on a
timer and measures the event loop's stalls (`stall_gaps`); tests drive it to look for
exceptions. Decisions:

* Widgets are found generically (``findChildren``) among those visible and enabled, so
  a new panel is exercised without code here. Buttons whose text ends in "…" open a
  modal file dialog and are left alone (a dialog would wait for a person).
* Spin boxes take values within 64 of their minimum (a seed of 2³¹ adds nothing; n
  beyond 64 is refused anyway); sliders and combo boxes take any value they offer.
* Each action says what it did (``"slider noise → 0.31"``), so a stall can be traced
  to the action before it.
"""

from __future__ import annotations

import random

from PySide6.QtWidgets import (QAbstractButton, QAbstractSlider, QAbstractSpinBox, QCheckBox,
                               QComboBox, QDoubleSpinBox, QListWidget, QSpinBox, QTabWidget)

KINDS = ("slider", "spin", "combo", "check", "button", "list", "tab")
WEIGHTS = (6, 2, 3, 1, 2, 2, 2)  # sliders are what a user plays with most
SPIN_SPAN = 64


def _name(widget) -> str:
    return widget.objectName() or widget.toolTip().split("\n")[0][:40] or type(widget).__name__


def stall_gaps(ticks: list[float], interval_ms: float) -> list[float]:
    """Stalls from a repeating timer's firing times (ms): each gap minus the interval,
    0 when the timer fired early to catch up."""
    return [max(0.0, b - a - interval_ms) for a, b in zip(ticks, ticks[1:])]


class RandomUser:
    def __init__(self, window, seed: int = 0):
        self.window = window
        self.rng = random.Random(seed)

    def _widgets(self, kind: str) -> list:
        w = self.window
        types = {"slider": QAbstractSlider, "spin": QAbstractSpinBox, "combo": QComboBox,
                 "check": QCheckBox, "button": QAbstractButton, "list": QListWidget,
                 "tab": QTabWidget}[kind]
        found = [x for x in w.findChildren(types) if x.isVisible() and x.isEnabled()]
        if kind == "slider":  # a slider inside a spin box or a scroll bar is not a control
            found = [x for x in found if type(x).__name__ != "QScrollBar"]
        if kind == "button":
            found = [x for x in found if not isinstance(x, QCheckBox) and x.text()
                     and not x.text().endswith("…") and x.text() != "✕"]
        if kind == "list":
            found = [x for x in found if x.count()]
        return found

    def act(self) -> str:
        """Perform one random action; returns what it did."""
        for _ in range(20):
            kind = self.rng.choices(KINDS, WEIGHTS)[0]
            widgets = self._widgets(kind)
            if widgets:
                return getattr(self, f"_{kind}")(self.rng.choice(widgets))
        return "nothing to do"

    def _slider(self, s) -> str:
        lo, hi = s.minimum(), s.maximum()  # superqt's float sliders give floats
        value = self.rng.randint(lo, hi) if isinstance(lo, int) and isinstance(hi, int) else \
            round(self.rng.uniform(lo, hi), 4)
        s.setValue(value)
        return f"slider {_name(s)} → {value}"

    def _spin(self, s) -> str:
        if isinstance(s, QDoubleSpinBox):
            value = round(self.rng.uniform(s.minimum(), min(s.maximum(), s.minimum() + SPIN_SPAN)),
                          s.decimals())
        elif isinstance(s, QSpinBox):
            value = self.rng.randint(s.minimum(), min(s.maximum(), s.minimum() + SPIN_SPAN))
        else:
            return f"spin {_name(s)} (not a number)"
        s.setValue(value)
        return f"spin {_name(s)} → {value}"

    def _combo(self, c) -> str:
        index = self.rng.randrange(c.count()) if c.count() else -1
        c.setCurrentIndex(index)
        return f"combo {_name(c)} → {c.itemText(index)!r}"

    def _check(self, c) -> str:
        c.click()
        return f"check {c.text()} → {c.isChecked()}"

    def _button(self, b) -> str:
        b.click()
        return f"button {b.text()!r}"

    def _list(self, lst) -> str:
        row = self.rng.randrange(lst.count())
        lst.setCurrentRow(row)
        return f"list {_name(lst)} → row {row}"

    def _tab(self, tabs) -> str:
        index = self.rng.randrange(tabs.count())
        tabs.setCurrentIndex(index)
        return f"tab → {tabs.tabText(index)!r}"
