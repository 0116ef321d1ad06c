"""Start the studio: ``python -m studio [--run-demo --screenshot PATH] [options]``.

* Plain start: the window appears first; the engine (torch) is imported right after
  the first paint, then the last session (QSettings) or the embedded default (demo
  image 0, a fast method) is restored. ``--start-time`` prints the time to the first
  paint and to the engine being ready.
* Settings live where `settings_store` says: ``$RESTORATION_STUDIO_SETTINGS`` (an INI
  file) when set — the test suite sets it, so no test touches the user's settings —
  else the platform's user settings.
* Exceptions that reach the event loop go to `ExceptionHook` (counted, observable).
* ``--run-demo``: on a fresh state (no stored settings read or written) it loads a
  demo image (or ``--image PATH``), degrades it, runs the method to completion on the engine thread, fills
  the diversity gallery, saves a screenshot of the window with ``--screenshot PATH``
  and exits 0 (1 on failure or after ``--timeout`` seconds). Works offscreen.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

import studio  # noqa: F401  (selects the Qt binding for superqt and pyqtgraph)
from PySide6.QtCore import QObject, Signal

SETTINGS_ENV = "RESTORATION_STUDIO_SETTINGS"

SCREENSHOT_SIZE = (1440, 920)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m studio", description="Restoration Studio")
    p.add_argument("--run-demo", action="store_true",
                   help="run one restoration end to end, then exit")
    p.add_argument("--screenshot", metavar="PATH", help="with --run-demo: save the window as PNG")
    p.add_argument("--method", help="NAME or NAME@MODEL (default: a fast method that needs "
                                    "no trained model)")
    p.add_argument("--degrade", help="degradation spec, e.g. blur=1.5,noise=0.05 "
                                     "(default: one that suits the method)")
    p.add_argument("--sample", type=int, default=0, help="demo image index")
    p.add_argument("--image", metavar="PATH", help="with --run-demo: open this photo instead of a "
                                                   "demo image (kept at its size by a photo model)")
    p.add_argument("--n", type=int, default=8, help="samples (the diversity gallery)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--timeout", type=float, default=300.0, help="with --run-demo: give up after")
    p.add_argument("--start-time", action="store_true", help="print start-up timings")
    return p


def settings_store(fresh: bool = False):
    """Where the studio keeps its settings: ``$RESTORATION_STUDIO_SETTINGS`` (an INI file;
    tests and benchmarks point it at a temporary folder) or the platform's user settings
    (``~/.config/RestorationStudio`` on Linux); None = a fresh state, nothing stored."""
    from PySide6.QtCore import QSettings

    if fresh:
        return None
    path = os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(path, QSettings.Format.IniFormat)
    return QSettings("RestorationStudio", "Restoration Studio")


class Demo:
    """Drives one ``--run-demo`` restoration through the real window and worker."""

    def __init__(self, window, args, app):
        self.window, self.args, self.app = window, args, app
        self.exit_code = 1

    def start(self) -> None:
        from engine.core.registry import make_params
        from engine.core.step import EngineError

        w, args = self.window, self.args
        w.method_panel.live.setChecked(False)
        try:
            method, model, spec, params = w.catalog.default_choice()
            if args.method:
                method, _, given = args.method.partition("@")
                if method not in w.catalog.methods:
                    return self.fail(f"unknown method {method!r}; known: {', '.join(w.catalog.methods)}")
                model = given or (w.catalog.image_models_for(method) or [None])[0]
                # a task-bound model (aps-sr2, tim-sr4) starts on the task it was trained for
                spec = w.catalog.task_of(model) or w.catalog.methods[method].example_degradation or spec
                params = {}
            params.update(kv.split("=", 1) for kv in args.param)
            typed = make_params(w.catalog.methods[method].params, params)  # checks and converts
            params = {name: getattr(typed, name) for name in params}
            w.state.degradation.set_spec(args.degrade or spec)
            w.choose_method(method, model, params)
            w.state.method.n, w.state.method.seed = args.n, args.seed
            if args.image is None:
                w.choose_demo(args.sample)
            elif not w.open_path(args.image):
                return self.fail(f"cannot open {args.image}")
        except (EngineError, ValueError, IndexError, KeyError) as err:
            return self.fail(f"cannot set up the demo: {err}")
        w.controller.finished.connect(self.finished)
        w.controller.failed.connect(lambda _, message: self.fail(message))
        w.controller.cancelled.connect(lambda _: self.fail("the job was cancelled"))
        w.tabs.setCurrentWidget(w.diversity)
        w.run_job()

    def finished(self, ticket, outcome) -> None:
        if ticket.purpose != "restore":
            return
        self.app.processEvents()
        n = self.window.diversity.count
        if self.args.screenshot:
            image = self.window.grab()
            if not image.save(self.args.screenshot):
                return self.fail(f"cannot write {self.args.screenshot}")
            print(f"screenshot {image.width()}×{image.height()} → {self.args.screenshot}")
        m = outcome.result.metrics
        shown = ", ".join(f"{k}={v:.4g}" for k, v in m.items() if isinstance(v, float))
        print(f"demo: {ticket.label} on {ticket.request.source} "
              f"({self.window.state.degradation.spec()}): {n} samples; {shown}")
        self.exit_code = 0
        self.app.quit()

    def fail(self, message: str) -> None:
        if self.exit_code == 0:  # already done
            return
        print(f"demo failed: {message}", file=sys.stderr)
        self.exit_code = 1
        self.app.quit()


class ExceptionHook(QObject):
    """``sys.excepthook`` of the studio: an exception that reached Qt's event loop is a
    bug, not a user error. It prints the traceback, says so in the window (or fails the
    demo), keeps running, and counts: `count` and the `raised` signal let tests and
    other observers see every one (the random-input drive allows none)."""

    raised = Signal(str)  # "Type: message"

    def __init__(self, window, demo=None):
        super().__init__(window)
        self.window, self.demo = window, demo
        self.count = 0

    def __call__(self, kind, error, tb) -> None:
        self.count += 1
        traceback.print_exception(kind, error, tb)
        text = f"{kind.__name__}: {error}"
        if self.demo is not None:
            self.demo.fail(text)
        else:
            self.window.messages.error(f"Internal error ({text}); details on stderr. "
                                       "Please report it.")
        self.raised.emit(text)


def install_excepthook(window, demo=None) -> ExceptionHook:
    """Make an `ExceptionHook` for ``window`` the process's ``sys.excepthook``."""
    hook = ExceptionHook(window, demo)
    sys.excepthook = hook
    return hook


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from studio.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Restoration Studio")
    app.setOrganizationName("RestorationStudio")
    window = MainWindow(settings_store(fresh=args.run_demo))
    if args.run_demo:
        window.resize(*SCREENSHOT_SIZE)
    window.show()
    shown = time.perf_counter() - started
    demo = Demo(window, args, app) if args.run_demo else None

    def load():
        if demo is not None:
            QTimer.singleShot(int(args.timeout * 1000), lambda: demo.fail("timed out"))
        window.load_engine()
        if args.start_time:
            print(f"window shown after {shown:.2f} s; engine ready after "
                  f"{time.perf_counter() - started:.2f} s")
        if demo is not None:
            demo.start()

    install_excepthook(window, demo)
    QTimer.singleShot(0, load)
    code = app.exec()
    return demo.exit_code if demo is not None else code
