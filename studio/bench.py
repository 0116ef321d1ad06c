"""GUI benchmarks: ``python -m studio.bench [--json OUT] [--quick] [--method SPEC] [--nfe N]
[--actions N] [--seed S] [--large SIDE] [--only SECTION ...]``.

The numbers the studio promises, measured on the real window (offscreen works), in
one run:

* ``preview``: slider → degraded preview latency for a 512×512 RGB photo with a box
  mask on. Each sample is one slider ``setValue`` (the signal a drag emits) until the
  degraded canvas holds the new measurement, followed by ``processEvents`` so the
  repaint is included. Each repeat sweeps the slider's values shifted by
  ``PREVIEW_NUDGE`` (never one seen before, as in a drag: no cache keyed by the value
  hides its cost); the blur sweep ends at σ = 3.09, which the mask sweep keeps on.
  Medians and 95th percentiles per slider; the target is one frame (16 ms). Beside the
  wall clock, the GUI thread's CPU time per move (``time.thread_time``: what the move
  costs, whatever else shares the cores) and its minor page faults.
* ``stall``: the GUI event loop's longest stall while a long job (1000 NFE by default)
  runs on the engine thread. A 5 ms repeating timer records when the loop serves it;
  a stall is a gap between two firings minus the interval (0 when the timer fired early
  to catch up). Frames the worker streamed and the job's wall time are reported with it.
* ``first_step``: time from "Run" (`MainWindow.run_job`) to the first Step's frame
  arriving on the GUI thread, for the stall job's method on a 28×28 demo image. The
  first run loads the model (``cold_ms``); the median of the later ones is the
  cached-model figure (``median_ms``: whatever the engine caches, this measures it).
  Each run is stopped once its first frame arrived.
* ``live``: restorations per second that reach the screen while a degradation slider
  (blur σ) is dragged at 60 moves per second with Live on, for ``pinv`` and
  ``tikhonov`` on the 28×28 demo image with the window's default 8 samples (goal ≥ 15),
  then whether the result after the drag is the one of the final slider value.

* ``random_input``: the event loop's stalls while a seeded random user
  (`studio.random_input`) clicks buttons, moves sliders, changes combo boxes and spin
  boxes, picks images and switches tabs, one action every 20–120 ms, for ``--actions``
  actions (300; at most 40 with ``--quick``); measured like ``stall``, with the five worst stalls
  and the action before each. Goal: p99 ≤ 30 ms, longest ≤ 100 ms.
* ``open_large``: the longest stall while a ``--large`` × ``--large`` (6000) RGB PNG is
  opened through the window's file path, until its degraded preview is shown
  (at most 1500 with ``--quick``).

The window is measured after start-up has finished (`MainWindow.warm_up` joined).
The 512×512 RGB photo (scikit-image's held-out ``chelsea``, resized) is opened through
the window's file path with the fully-convolutional ``photo`` model selected
(``ddim@photo``: it keeps the photo's size; without that model shipped, the Tikhonov
baseline, which needs no model), so the method panel's checks of each degradation are
timed too. Timings are medians over this run; compare ratios within one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from studio.random_input import stall_gaps

PREVIEW_SLIDERS = {  # slider → values swept (each differs from the previous one)
    "noise": [0.02, 0.05, 0.1, 0.2, 0.3],
    "blur": [0.5, 1.0, 1.5, 2.0, 3.0],
    "mask_level": [0.2, 0.4, 0.6, 0.8, 0.3],
}
PREVIEW_NUDGE = 0.01  # repeat r sweeps the values + r·PREVIEW_NUDGE: a drag meets new values
PREVIEW_SIDE = 512  # the preview benchmark's photo (RGB, square)
TIMER_MS = 5
LIVE_METHODS = ("pinv", "tikhonov")
LIVE_N = 8  # the window's default number of samples
DRAG_HZ = 60


def _rgb_image_file(folder: Path) -> Path:
    from PIL import Image

    from engine.io.photos import load_photo

    photo = load_photo("chelsea")  # (3, H, W) in [0, 1], held out from the photo prior's training
    pixels = (photo.permute(1, 2, 0) * 255).round().byte().numpy()
    path = folder / f"bench-{PREVIEW_SIDE}-rgb.png"
    Image.fromarray(pixels).resize((PREVIEW_SIDE, PREVIEW_SIDE), Image.BICUBIC).save(path)
    return path


def percentile(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(values, 100 * q, method="nearest"))  # an observed value


def _ticking(interval_ms: float = TIMER_MS):
    """A started repeating timer, the list its firing times (ms) go to, and their clock."""
    from PySide6.QtCore import QElapsedTimer, QTimer

    clock, ticks = QElapsedTimer(), []
    timer = QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(lambda: ticks.append(clock.nsecsElapsed() / 1e6))
    clock.start()
    timer.start()
    return timer, ticks, clock


def _stalls(ticks: list[float]) -> dict:
    gaps = stall_gaps(ticks, TIMER_MS)
    worst = max(range(len(gaps)), key=gaps.__getitem__) if gaps else 0
    return {"longest_stall_ms": gaps[worst] if gaps else 0.0,
            "longest_stall_at_s": ticks[worst] / 1e3 if gaps else 0.0,
            "p99_stall_ms": percentile(gaps, 0.99) if gaps else 0.0,
            "median_stall_ms": statistics.median(gaps) if gaps else 0.0, "ticks": len(ticks)}


def bench_preview(window, app, repeats: int) -> dict:
    import resource

    import numpy as np

    panel, canvas = window.degradation_panel, window.canvases["degraded"]
    window.state.degradation.mask = "box"
    app.processEvents()
    who = getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF)  # this (GUI) thread
    out = {}
    for slider, values in PREVIEW_SLIDERS.items():
        widget = getattr(panel, slider)
        times, cpu, faults = [], [], 0
        for r in range(repeats):
            for value in values:
                value = round(value + r * PREVIEW_NUDGE, 3)
                before = canvas.array
                flt, thread, start = resource.getrusage(who).ru_minflt, time.thread_time(), time.perf_counter()
                widget.setValue(value)
                app.processEvents()
                times.append(time.perf_counter() - start)
                cpu.append(time.thread_time() - thread)
                faults += resource.getrusage(who).ru_minflt - flt
                if canvas.array is before or np.array_equal(canvas.array, before):
                    raise RuntimeError(f"moving {slider} to {value} did not update the preview")
        out[slider] = {"median_ms": 1e3 * statistics.median(times),
                       "p95_ms": 1e3 * percentile(times, 0.95), "samples": len(times),
                       "cpu_median_ms": 1e3 * statistics.median(cpu), "cpu_p95_ms": 1e3 * percentile(cpu, 0.95),
                       "page_faults_per_move": faults / len(times)}
    return out


def bench_stall(window, app, method: str, nfe: int, n: int) -> dict:
    from PySide6.QtCore import QEventLoop

    name, _, model = method.partition("@")
    window.choose_method(name, model or None, {"nfe": nfe})
    window.state.degradation.set_spec("noise=0.2")
    window.state.method.n = n
    app.processEvents()
    frames = [0]
    loop, outcome = QEventLoop(), {}

    def finished(ticket, result):
        outcome["result"] = result
        loop.quit()

    def failed(ticket, message):
        outcome["error"] = message
        loop.quit()

    window.controller.frame.connect(lambda *_: frames.__setitem__(0, frames[0] + 1))
    window.controller.finished.connect(finished)
    window.controller.failed.connect(failed)
    timer, ticks, clock = _ticking()
    ticks.append(0.0)  # the timer's start: a loop blocked from the first moment counts
    started = time.perf_counter()
    window.run_job()
    loop.exec()
    ticks.append(clock.nsecsElapsed() / 1e6)  # and up to the job's end
    wall = time.perf_counter() - started
    timer.stop()
    if "error" in outcome:
        raise RuntimeError(f"the job failed: {outcome['error']}")
    return {"method": method, "nfe": nfe, "n": n, "job_seconds": wall,
            "frames_drawn": frames[0], "timer_ms": TIMER_MS, **_stalls(ticks)}


class _Waiter:
    """Counts the window controller's events for a benchmark and ends an event loop."""

    def __init__(self, window, quit_on_frame: bool = False):
        from PySide6.QtCore import QEventLoop

        self.loop, self.frames, self.finished, self.errors = QEventLoop(), [], [], []
        self.quit_on_frame = quit_on_frame
        c = window.controller
        c.frame.connect(self._on_frame)
        c.finished.connect(lambda ticket, outcome: self.finished.append((time.perf_counter(), ticket, outcome)))
        c.failed.connect(lambda ticket, message: (self.errors.append(message), self.loop.quit()))

    def _on_frame(self, ticket, frame) -> None:
        self.frames.append((time.perf_counter(), ticket))
        if self.quit_on_frame:
            self.loop.quit()

    def check(self) -> None:
        if self.errors:
            raise RuntimeError(f"the job failed: {self.errors[-1]}")


def bench_first_step(window, app, method: str, repeats: int) -> dict:
    name, _, model = method.partition("@")
    window.choose_demo(0)
    window.choose_method(name, model or None, {})
    window.state.degradation.set_spec("noise=0.2")
    window.state.method.n = 1
    app.processEvents()
    waiter = _Waiter(window, quit_on_frame=True)
    times = []
    for _ in range(repeats + 1):
        window.controller.wait()
        del waiter.frames[:]
        started = time.perf_counter()
        window.run_job()
        waiter.loop.exec()
        waiter.check()
        times.append(waiter.frames[0][0] - started)
        window.controller.stop()
    window.controller.wait()
    later = [1e3 * t for t in times[1:]]
    return {"method": method, "cold_ms": 1e3 * times[0], "median_ms": statistics.median(later),
            "min_ms": min(later), "runs": len(later)}


def bench_live(window, app, method: str, seconds: float, n: int) -> dict:
    from PySide6.QtCore import Qt, QTimer

    window.choose_demo(0)
    window.choose_method(method, None, {})
    window.state.method.n = n
    window.state.degradation.set_spec("blur=0.5,noise=0.05")
    app.processEvents()
    window.controller.wait()
    waiter = _Waiter(window)
    slider = window.degradation_panel.editor("blur")
    values = [round(0.5 + 0.01 * k, 2) for k in range(int(seconds * DRAG_HZ) + 1)]
    moves = iter(values)

    def move():
        value = next(moves, None)
        if value is None:
            waiter.loop.quit()
        else:
            slider.setValue(value)

    drag = QTimer()
    drag.setTimerType(Qt.TimerType.PreciseTimer)
    drag.timeout.connect(move)
    window.method_panel.live.setChecked(True)
    started = time.perf_counter()
    drag.start(round(1000 / DRAG_HZ))
    waiter.loop.exec()
    drag.stop()
    dragged = time.perf_counter() - started
    during = [t for t, ticket, _ in waiter.finished if ticket.purpose == "restore" and t <= started + dragged]
    final = window.state.degradation.spec()
    settled = lambda: waiter.finished and waiter.finished[-1][2].result.recipe["degradation"] == final
    poll = QTimer()
    poll.timeout.connect(lambda: (settled() or time.perf_counter() > started + dragged + 30)
                         and waiter.loop.quit())
    poll.start(20)  # until the result of the final slider value is shown (at most 30 s)
    waiter.loop.exec()
    poll.stop()
    window.method_panel.live.setChecked(False)
    window.controller.wait()
    waiter.check()
    last = waiter.finished[-1][2].result.recipe["degradation"] if waiter.finished else None
    return {"method": method, "n": window.state.method.n, "moves": len(values),
            "seconds": dragged, "updates": len(during), "updates_per_s": len(during) / dragged,
            "last_result_spec": last, "final_spec": final}


def bench_random_input(window, app, actions: int, seed: int) -> dict:
    """Random clicks, slider moves, combo changes and tab switches (`studio.random_input`),
    one every 20–120 ms (a fast user), while a 5 ms timer measures the loop's stalls."""
    import random

    from PySide6.QtCore import QEventLoop, QTimer

    from studio.random_input import RandomUser

    user, pace = RandomUser(window, seed), random.Random(seed + 1)
    window.choose_demo(0)
    app.processEvents()
    loop, done, log = QEventLoop(), [0], []  # log: (start ms, end ms, what)
    step = QTimer()
    step.setSingleShot(True)

    def act():
        if done[0] == actions:
            loop.quit()
            return
        done[0] += 1
        start = clock.nsecsElapsed() / 1e6
        what = user.act()
        log.append((start, clock.nsecsElapsed() / 1e6, what))
        step.start(pace.randint(20, 120))

    step.timeout.connect(act)
    timer, ticks, clock = _ticking()
    started = time.perf_counter()
    step.start(0)
    loop.exec()
    timer.stop()
    window.controller.stop()
    window.controller.wait()
    report = {"actions": actions, "seed": seed, "seconds": time.perf_counter() - started,
              **_stalls(ticks)}
    gaps = stall_gaps(ticks, TIMER_MS)
    worst = sorted(range(len(gaps)), key=gaps.__getitem__, reverse=True)[:5]
    report["worst"] = [{"stall_ms": gaps[k], "after": _last_action(log, ticks[k + 1])}
                       for k in worst]
    report["slowest_actions"] = [{"ms": end - start, "what": what} for start, end, what in
                                 sorted(log, key=lambda e: e[0] - e[1])[:5]]
    return report


def _last_action(log, at_ms: float) -> str:
    before = [what for start, _, what in log if start <= at_ms]
    return before[-1] if before else "(before the first action)"


def bench_open_large(window, app, folder: Path, size: int) -> dict:
    """The loop's longest stall while a size × size RGB photo is opened (file → preview)."""
    import numpy as np
    from PIL import Image

    from PySide6.QtCore import QEventLoop, QTimer

    path = folder / f"bench-{size}-rgb.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path, compress_level=1)
    window.choose_demo(0)
    window.choose_method("tikhonov", None, {})  # no model: the photo is kept at its size
    window.state.degradation.set_spec("noise=0.05")  # (a blur's exact dense preview takes minutes)
    app.processEvents()
    loop, before = QEventLoop(), window.canvases["degraded"].array
    shown, poll = [], QTimer()

    def check():
        if not shown and window.canvases["degraded"].array is not before and \
                window.working is not None and window.working.shape[-1] == size:
            shown.append(time.perf_counter())
            QTimer.singleShot(100, loop.quit)  # a few more ticks: the last gap is measured too

    poll.timeout.connect(check)
    timer, ticks, _ = _ticking()
    ticks.append(0.0)  # the timer's start: a loop blocked from the first moment counts
    started = time.perf_counter()
    QTimer.singleShot(0, lambda: window.open_path(str(path)))
    poll.start(5)
    loop.exec()
    seconds = shown[0] - started
    poll.stop()
    timer.stop()
    window.choose_demo(0)
    app.processEvents()
    return {"size": size, "seconds_to_preview": seconds, **_stalls(ticks)}


SECTIONS = ("preview", "first_step", "live", "stall", "random_input", "open_large")


def run(quick: bool, method: str | None, nfe: int, n: int, only: tuple[str, ...] = SECTIONS,
        actions: int = 300, seed: int = 0, large: int = 6000) -> dict:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    import studio  # noqa: F401  (selects the Qt binding)
    from engine.priors.catalog import learned_models
    from studio.main_window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = MainWindow(settings=None)
    window.resize(1440, 920)
    window.method_panel.live.setChecked(False)
    window.load_engine()
    window.show()
    window.warm_up.join()  # start-up's own work, finished before a user's first input
    report = {}
    method = method or ("ddim@vp" if "vp" in learned_models() else "ddim@empirical-vp")
    with tempfile.TemporaryDirectory() as folder:
        if "preview" in only:
            if "photo" in learned_models():
                window.choose_method("ddim", "photo", {"nfe": 1})
            else:
                window.choose_method("tikhonov", None, {})
            if not window.open_path(str(_rgb_image_file(Path(folder)))):
                raise RuntimeError("cannot open the benchmark image")
            app.processEvents()
            assert tuple(window.working.shape) == (3, PREVIEW_SIDE, PREVIEW_SIDE)
            report["preview"] = bench_preview(window, app, repeats=2 if quick else 10)
        if "open_large" in only:
            report["open_large"] = bench_open_large(window, app, Path(folder),
                                                    min(large, 1500) if quick else large)
    if "first_step" in only:
        report["first_step"] = bench_first_step(window, app, method, repeats=3 if quick else 10)
    if "live" in only:
        report["live"] = {m: bench_live(window, app, m, 1.0 if quick else 3.0, LIVE_N)
                          for m in LIVE_METHODS}
    if "stall" in only:
        report["stall"] = bench_stall(window, app, method, 50 if quick else nfe, n)
    if "random_input" in only:
        report["random_input"] = bench_random_input(window, app, min(actions, 40) if quick else actions,
                                                    seed)
    window.controller.shutdown()
    window.close()
    return report


def stall_text(r: dict) -> str:
    return (f"longest {r['longest_stall_ms']:.1f} ms, p99 {r['p99_stall_ms']:.1f} ms, "
            f"median {r['median_stall_ms']:.2f} ms")


def format_report(report: dict) -> str:
    lines = []
    if "preview" in report:
        lines.append(f"slider → degraded preview, {PREVIEW_SIDE}×{PREVIEW_SIDE} RGB "
                     f"(target p95 ≤ 16 ms):")
        lines += [f"  {name:<11} median {r['median_ms']:6.2f} ms, p95 {r['p95_ms']:6.2f} ms "
                  f"({r['samples']} moves); GUI-thread CPU median {r['cpu_median_ms']:5.2f} ms, "
                  f"p95 {r['cpu_p95_ms']:5.2f} ms; {r['page_faults_per_move']:.0f} page faults a move"
                  for name, r in report["preview"].items()]
    if "first_step" in report:
        f = report["first_step"]
        lines.append(f"Run → first Step on the screen, {f['method']} (28×28): {f['median_ms']:.1f} ms "
                     f"median over {f['runs']} runs with the model loaded before "
                     f"(min {f['min_ms']:.1f} ms; the first run, loading it: {f['cold_ms']:.1f} ms)")
    for name, r in report.get("live", {}).items():
        lines.append(f"live {name:<9} while dragging blur σ at {DRAG_HZ} Hz (28×28, n={r['n']}): "
                     f"{r['updates_per_s']:.1f} updates/s ({r['updates']} in {r['seconds']:.1f} s; goal ≥ 15)")
    if "stall" in report:
        s = report["stall"]
        lines.append(f"event-loop stall during {s['method']} at {s['nfe']} NFE × {s['n']} samples "
                     f"({s['job_seconds']:.1f} s, {s['frames_drawn']} frames drawn): "
                     f"{stall_text(s)} (longest at {s['longest_stall_at_s']:.2f} s)")
    if "random_input" in report:
        r = report["random_input"]
        lines.append(f"event-loop stall under random input ({r['actions']} actions, seed {r['seed']}, "
                     f"{r['seconds']:.1f} s; goal p99 ≤ 30 ms, longest ≤ 100 ms): {stall_text(r)}")
        lines += [f"  {w['stall_ms']:7.1f} ms after {w['after']}" for w in r["worst"]]
    if "open_large" in report:
        o = report["open_large"]
        lines.append(f"opening a {o['size']}×{o['size']} RGB PNG (file → degraded preview "
                     f"{o['seconds_to_preview']:.2f} s): longest stall {o['longest_stall_ms']:.1f} ms, "
                     f"p99 {o['p99_stall_ms']:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.bench", description=__doc__.splitlines()[0])
    p.add_argument("--json", help="write the report here")
    p.add_argument("--quick", action="store_true", help="few repeats and a 50-NFE job")
    p.add_argument("--method", help="METHOD@MODEL for the stall job (default ddim@vp)")
    p.add_argument("--nfe", type=int, default=1000)
    p.add_argument("--n", type=int, default=4, help="samples in the stall job")
    p.add_argument("--actions", type=int, default=300, help="random-input actions")
    p.add_argument("--seed", type=int, default=0, help="seed of the random input")
    p.add_argument("--large", type=int, default=6000, help="side of the large image opened")
    p.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                   help="run only these sections")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    report = run(args.quick, args.method, args.nfe, args.n, tuple(args.only), args.actions,
                 args.seed, args.large)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
