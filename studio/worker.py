"""The engine worker: one background thread runs every task; the GUI only watches.

`EngineController.submit(request)` runs ``engine.core.jobs.Job(request).steps()`` (through
`studio.tasks.job_events`) inside a superqt `GeneratorWorker`, which checks for abort
and pause between yields: Stop cancels within one step (one network evaluation), pause
costs nothing. `submit_task` runs any other task generator the same way. Decisions:

* One thread: workers run on a private `QThreadPool` with a single thread that never
  expires, so all torch work (loading priors, measuring, sampling, metrics) happens on
  that thread, one job at a time. The GUI thread only computes cheap previews.
* Latest wins: a new request drops the queued one and aborts the running one, whose
  events are ignored from then on (each worker's signals carry its ticket).
* "Stop and keep x̂0" sends `KEEP` into the generator (see `studio.tasks`), so the
  result holds the current estimate (``Result.stopped``).
* Tasks yield after every step (the abort check); None events are dropped at once,
  the others are relayed by type: `Prepared`, `Frame`, anything else as `event`.
* Threads per task: a job whose method runs no network (the baselines: tiny linear
  algebra) runs with one intra-op torch thread, anything else with torch's default.
  Measured on the shared 2-core machine under load: `Blur.forward` on 8×1×28×28 took
  0.02 ms on one thread and ≈100 ms on two (the second thread waits for a busy core),
  which alone made live Tikhonov re-runs take seconds. `torch.set_num_threads` acts
  per thread, so this touches neither the GUI thread nor other tasks.
* Errors never escape: engine errors (`EngineError`) reach the GUI as their message,
  anything else as its type and message (and the traceback on stderr). Every
  exception ends its task with `failed` then `finished`, a `RuntimeError` too (superqt
  takes one for a deleted worker and would end the task silently: `EngineWorker.work`).
"""

from __future__ import annotations

import itertools
import sys
import traceback
from contextlib import contextmanager

from PySide6.QtCore import QObject, QThreadPool, Signal
from superqt.utils import GeneratorWorker

from studio.tasks import KEEP, Frame, Prepared, Ticket, job_events

RETIRED = 4  # finished workers kept alive (the oldest has certainly left run())


class EngineWorker(GeneratorWorker):
    """A `GeneratorWorker` that closes its generator on the worker thread when it ends and
    runs with ``threads`` intra-op torch threads (None = torch's default)."""

    def __init__(self, task, *args, threads: int | None = None):
        super().__init__(task, *args)
        self.threads = threads

    def work(self):
        with intra_op_threads(self.threads):
            try:
                result = super().work()
            finally:
                self._gen.close()
        if isinstance(result, BaseException):
            # superqt returns a RuntimeError raised by the generator (torch raises many)
            # instead of raising it, and then emits neither errored nor finished: the
            # studio would stay on "Running…" forever. Raised here, it ends the task
            # through `errored` and `finished` like any other exception.
            raise result
        return result


@contextmanager
def intra_op_threads(threads: int | None):
    """Run the block with this many intra-op torch threads on this thread (None: as is)."""
    if threads is None:
        yield
        return
    import torch

    default = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(default)


def threads_for(request) -> int | None:
    """One intra-op thread for a method without a network, else torch's default."""
    from engine.core import registry
    from engine.core.step import EngineError

    try:
        return None if registry.get(registry.split_spec(request.method)[0]).needs_prior else 1
    except EngineError:  # the job itself will say what is wrong with the request
        return None


def failure_message(ticket: Ticket, exc: BaseException) -> str:
    """What the user reads when a task fails: an engine error's message, anything else
    as its type and message (its traceback goes to stderr). The window prefixes the
    task's label, so a message that starts with the method's name loses it here."""
    from engine.core.step import EngineError

    if isinstance(exc, EngineError):
        message = str(exc)
    else:
        message = f"{type(exc).__name__}: {exc}"
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
    method = ticket.label.partition("@")[0]
    return message[len(method) + 2:] if method and message.startswith(f"{method}: ") else message


class EngineController(QObject):
    """Submits requests to the single engine thread and relays their events."""

    started = Signal(object)  # Ticket
    prepared = Signal(object, object)  # Ticket, Prepared
    frame = Signal(object, object)  # Ticket, Frame
    event = Signal(object, object)  # Ticket, any other event of a task (compare, playground)
    finished = Signal(object, object)  # Ticket, what the task returned (an Outcome for jobs)
    cancelled = Signal(object)  # Ticket (stopped without keeping a result)
    failed = Signal(object, str)  # Ticket, message for the user
    busy_changed = Signal(bool)
    paused_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self.pool.setExpiryTimeout(-1)  # the one engine thread lives as long as the app
        self._ids = itertools.count(1)
        self._workers: dict[int, tuple[Ticket, EngineWorker]] = {}
        # Finished workers are kept a while: the engine thread may still be returning
        # from their run() when their `finished` reaches the GUI thread.
        self._retired: list[EngineWorker] = []
        self.current: Ticket | None = None

    # -- control ----------------------------------------------------------------------
    def submit(self, request, purpose: str = "restore") -> Ticket:
        """Run the job for ``request`` next (latest wins: the others are cancelled)."""
        ticket = Ticket(next(self._ids), purpose, request.method, request)
        return self._start(ticket, job_events, ticket, threads=threads_for(request))

    def submit_task(self, task, *args, purpose: str, label: str) -> Ticket:
        """Run ``task(ticket, *args)``, a generator of events, next (latest wins)."""
        ticket = Ticket(next(self._ids), purpose, label)
        return self._start(ticket, task, ticket, *args)

    def _start(self, ticket: Ticket, task, *args, threads: int | None = None) -> Ticket:
        self.cancel_all()
        worker = EngineWorker(task, *args, threads=threads)
        worker.setAutoDelete(False)  # this controller owns the Python object
        worker.started.connect(lambda: self._on_started(ticket))
        worker.yielded.connect(lambda event: self._on_yielded(ticket, event))
        worker.returned.connect(lambda outcome: self._on_returned(ticket, outcome))
        worker.errored.connect(lambda exc: self._on_errored(ticket, exc))
        worker.aborted.connect(lambda: self._on_aborted(ticket))
        worker.paused.connect(lambda: self._emit_if_current(ticket, self.paused_changed, True))
        worker.resumed.connect(lambda: self._emit_if_current(ticket, self.paused_changed, False))
        worker.finished.connect(lambda: self._on_finished(ticket))
        self._workers[ticket.id] = (ticket, worker)
        self.current = ticket
        self.pool.start(worker)
        self.busy_changed.emit(True)
        return ticket

    def stop(self, keep: bool = False) -> None:
        """Stop the current job after its current step; ``keep`` keeps its x̂0 as result."""
        if self.current is None or self.current.id not in self._workers:
            return
        worker = self._workers[self.current.id][1]
        if keep and worker.is_running:
            worker.send(KEEP)
            if worker.is_paused:
                worker.resume()
        else:
            self._cancel(self.current.id)

    def toggle_pause(self) -> None:
        if self.current is not None and self.current.id in self._workers:
            self._workers[self.current.id][1].toggle_pause()

    def cancel_all(self) -> None:
        for job_id in list(self._workers):
            self._cancel(job_id)

    def _cancel(self, job_id: int) -> None:
        ticket, worker = self._workers[job_id]
        if not worker.is_running and self.pool.tryTake(worker):  # still queued
            del self._workers[job_id]
            self._retired = (self._retired + [worker])[-RETIRED:]
            self._emit_if_current(ticket, self.cancelled, ticket)
            self._done(ticket)
            return
        worker.quit()

    def wait(self, msecs: int = -1) -> bool:
        """Block until the engine thread is idle (used at shutdown and by tests)."""
        return self.pool.waitForDone(msecs)

    def shutdown(self, msecs: int = 5000) -> None:
        self.cancel_all()
        self.wait(msecs)

    # -- events from the worker (delivered on the GUI thread) --------------------------
    def _emit_if_current(self, ticket: Ticket, signal, *args) -> None:
        if self.current is not None and ticket.id == self.current.id:
            signal.emit(*args)

    def _on_started(self, ticket):
        self._emit_if_current(ticket, self.started, ticket)

    def _on_yielded(self, ticket, event):
        if event is None:
            return
        if isinstance(event, Prepared):
            self._emit_if_current(ticket, self.prepared, ticket, event)
        elif isinstance(event, Frame):
            self._emit_if_current(ticket, self.frame, ticket, event)
        else:
            self._emit_if_current(ticket, self.event, ticket, event)

    def _on_returned(self, ticket, outcome):
        self._emit_if_current(ticket, self.finished, ticket, outcome)

    def _on_errored(self, ticket, exc):
        self._emit_if_current(ticket, self.failed, ticket, failure_message(ticket, exc))

    def _on_aborted(self, ticket):
        self._emit_if_current(ticket, self.cancelled, ticket)

    def _on_finished(self, ticket):
        ticket_and_worker = self._workers.pop(ticket.id, None)
        if ticket_and_worker is not None:
            self._retired = (self._retired + [ticket_and_worker[1]])[-RETIRED:]
        self._done(ticket)

    def _done(self, ticket):
        if self.current is not None and ticket.id == self.current.id:
            self.current = None
        if not self._workers:
            self.busy_changed.emit(False)
