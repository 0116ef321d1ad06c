"""Work too slow for the GUI thread and too small for the engine thread: one helper thread.

Converting and previewing a large photo (a 6000×6000 RGB file: 10 s to read, 3.5 s to
convert for display, minutes to blur with the engine's exact dense operator on the
shared 2-core machine) must neither freeze the window nor wait behind a 1000-step job
on the engine thread (`studio.worker`). `Background.call(key, fn, done)` runs ``fn()``
on one helper thread and hands its result (or the exception it raised) to ``done`` on
the GUI thread. Decisions:

* Latest wins per key: a call supersedes the earlier calls with the same key; those
  not started yet are skipped and the results of the others are dropped, so a slider
  dragged over a large photo computes at most the running preview and the last one.
* One worker of a `concurrent.futures.ThreadPoolExecutor`: at interpreter exit it is
  joined after its current call (calls superseded meanwhile are skipped, `cancel_all`
  at close skips the rest). A daemon thread instead was killed inside torch at exit,
  and the process aborted ("terminate called without an active exception", exit 134).
* One intra-op torch thread, as on the GUI thread (`studio.main_window.load_engine`):
  the engine thread may be busy with a job on the other core.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from PySide6.QtCore import QObject, Signal


class Background(QObject):
    _delivered = Signal(object)  # (done, token, key, result), emitted on the helper thread

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._latest: dict[str, object] = {}  # key → token of the newest call
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-background")
        self._delivered.connect(self._deliver)  # queued: the receiver lives on the GUI thread

    def call(self, key: str, fn, done) -> None:
        """Run ``fn()`` off the GUI thread; ``done(result or exception)`` on it, if still latest."""
        token = object()
        self._latest[key] = token
        self._pool.submit(self._run, key, token, fn, done)

    def cancel(self, key: str) -> None:
        self._latest.pop(key, None)

    def cancel_all(self) -> None:
        self._latest.clear()

    def pending(self, key: str) -> bool:
        return key in self._latest

    def _run(self, key: str, token, fn, done) -> None:
        if self._latest.get(key) is not token:
            return  # superseded before it started
        import torch

        torch.set_num_threads(1)  # acts on this thread only
        try:
            result = fn()
        except Exception as err:  # noqa: BLE001  (handed to the GUI thread, said there)
            result = err
        self._delivered.emit((done, token, key, result))

    def _deliver(self, item) -> None:
        done, token, key, result = item
        if self._latest.get(key) is token:
            del self._latest[key]
            done(result)
