"""The window's preview half: inputs → working image → degraded preview, and which
input changes reach which view.

A mixin of `studio.main_window.MainWindow`. Decisions:

* Fine-grained events. Each view listens to the fields it shows, and the preview is
  recomputed only when an input of the measurement changed: the source image, a
  degradation field (σ_y, an operator field, the measurement seed), or the method or
  model when that changes the working image (a model needs another shape). Parameters,
  seeds, n and the latent slider never recompute it. Any input change makes a running
  restoration stale. With Live off it keeps running (the user asked for it; stopping it
  at a nudge of a slider lost 397 steps of DDPM) and the changed inputs wait for the
  next Run: the views caption the run they show, amber once the settings differ
  (`studio.runs`). With Live on a throttled re-run follows (`LIVE_INTERVAL_MS`, leading and trailing). A live run younger than
  `LIVE_PATIENCE_MS` is left to finish and the latest settings run right after it, so a
  fast method shows a result at its own pace while a slider is dragged (superseding it
  at every move would show none); an older, slow one is superseded at once.
* The degraded preview is computed on the GUI thread with the engine's one measurement
  function, `engine.core.operators.measure_image`, with the same seed as the job: the
  preview *is* the job's y. It costs well under a millisecond at 28×28.
* The GUI thread computes previews with one intra-op torch thread (`MainWindow.load_engine`
  sets it; it acts on this thread only): a preview is small
  work, and a second thread that waits for a busy core turned 0.02 ms operations into
  ≈100 ms ones on the shared 2-core machine (see `studio.worker`).
* Its PSNR badge (of y, or of A⁺y when y is smaller) waits until the slider rests
  (`BADGE_DELAY_MS`); while it moves the badge says "PSNR …", never a stale figure.
* The formula line writes the measurement model with A as its composition, in the
  order the operators act.
"""

from __future__ import annotations

import time

from superqt.utils import QSignalDebouncer, QSignalThrottler

from studio.state import working_image

LIVE_INTERVAL_MS = 40  # at most 25 live re-runs per second while a slider moves
LIVE_PATIENCE_MS = 250  # a live run younger than this finishes before the next starts
BADGE_DELAY_MS = 120


class PreviewMixin:
    def _build_preview(self) -> None:
        self.live_throttler = QSignalThrottler(parent=self)  # leading and trailing runs
        self.live_throttler.setTimeout(LIVE_INTERVAL_MS)
        self.live_throttler.triggered.connect(self._live_rerun)
        self._live_pending = False  # the settings changed while a young live run ran
        self._run_started = 0.0  # perf_counter() when the last restoration was submitted
        self.badge_debouncer = QSignalDebouncer(self)
        self.badge_debouncer.setTimeout(BADGE_DELAY_MS)
        self.badge_debouncer.triggered.connect(self._update_preview_badge)
        self._preview = None  # (operator, y, x) of the last preview, for the badge

    def _connect_inputs(self) -> None:
        s = self.state
        s.source.events.image.connect(lambda *_: self._working_image_changed())
        s.source.events.name.connect(lambda *_: self._show_source())
        s.degradation.events.all.connect(lambda *_: self._measurement_changed())
        s.method.events.method.connect(lambda *_: self._working_image_changed())
        s.method.events.model.connect(lambda *_: self._working_image_changed())
        for name in ("params", "seed", "n", "device", "latent_seed", "latent_mix"):
            getattr(s.method.events, name).connect(lambda *_: self._inputs_changed())
        self.controller.finished.connect(lambda ticket, _: self._live_settled(ticket))
        self.controller.failed.connect(lambda ticket, _: self._live_settled(ticket))
        self.method_panel.live.toggled.connect(
            lambda on: self.live_throttler.throttle() if on else self.live_throttler.cancel())

    def _live_rerun(self) -> None:
        current = self.controller.current
        young = 1e3 * (time.perf_counter() - self._run_started) < LIVE_PATIENCE_MS
        if current is not None and current.purpose == "restore" and young:
            self._live_pending = True
            return
        self._live_pending = False
        self.run_job()

    def _live_settled(self, ticket) -> None:
        """A restoration ended: run the settings that changed meanwhile."""
        if ticket.purpose == "restore" and self._live_pending and self.method_panel.live.isChecked():
            self._live_pending = False
            self.run_job()

    # -- inputs → previews ------------------------------------------------------------
    def _ready(self) -> bool:
        return self.catalog is not None and self.state.source.image is not None

    def _working_image_changed(self) -> None:
        """The source or the model changed: convert the image; preview if it changed."""
        if not self._ready():
            return
        if self._update_working_image():
            self.clear_results()  # they showed another image
            self.update_preview()
        self._inputs_changed()

    def _measurement_changed(self) -> None:
        if not self._ready():
            return
        self.update_preview()
        self._inputs_changed()

    def _inputs_changed(self) -> None:
        """The shown runs may be stale: say so. With Live on, the throttled re-run
        supersedes a running one when it starts (so a fast job may still finish and
        show); with Live off the running job goes on and the next Run uses the inputs."""
        if not self._ready():
            return
        self.mark_stale()
        if self.method_panel.live.isChecked():
            self.live_throttler.throttle()

    def _update_working_image(self) -> bool:
        """Convert the source for the chosen model; True if the working image changed."""
        info = self.catalog.methods.get(self.state.method.method)
        shape = self.catalog.model_shape(self.state.method.model) if info and info.needs_prior else None
        image, note = working_image(self.state.source.image, shape)
        self._source_note = note
        self._show_source()
        if self.working is not None and image.shape == self.working.shape and (
                image is self.working or bool((image == self.working).all())):
            return False
        self.working = image
        c, h, w = image.shape
        self.canvases.set_extent(w, h)
        self.trajectory.set_extent(w, h)
        self.canvases["clean"].set_image(image)
        self.degradation_panel.set_image_shape((c, h, w))
        return True

    def _show_source(self) -> None:
        if self.state.source.image is not None:
            self.source_panel.set_source(self.state.source.name, tuple(self.state.source.image.shape),
                                         self._source_note)

    def update_preview(self) -> None:
        """The measurement y of the current settings, exactly as the job will draw it."""
        from engine.core.operators import measure_image
        from engine.core.step import BadInputError

        x = self.working[None]
        canvas = self.canvases["degraded"]
        try:
            degradation = self.state.degradation.degradation()
            op, y = measure_image(degradation, x, self.state.degradation.measurement_seed,
                                  self.state.degradation.measurement_noise)
        except BadInputError as err:
            self.degradation_panel.set_description(f"<span style='color:#e06c6c'>{err}</span>")
            canvas.set_badge("invalid")
            self._preview = None
            return
        canvas.set_image(y[0])
        self._preview = (op, y, x)
        canvas.set_badge("PSNR …")  # never a stale figure while the slider moves
        self.badge_debouncer.throttle()
        _, c, h, w = y.shape
        applied = op.describe()
        model = "y = x + σ_y ε" if applied == "noise" else f"y = A x + σ_y ε, A = {applied}"
        self.degradation_panel.set_description(
            f"{model} · y is {w}×{h}×{c} · spec <tt>{degradation.spec()}</tt>")

    def _update_preview_badge(self) -> None:
        from engine.evaluation.metrics import psnr

        if self._preview is None:
            return
        op, y, x = self._preview
        same = y.shape == x.shape  # else y is smaller: compare its pseudo-inverse A⁺y
        shown, label = (y, "y") if same else (op.pinv(y), "A⁺y")
        self.canvases["degraded"].set_badge(f"{label}: PSNR {float(psnr(shown.clamp(0, 1), x)):.1f} dB")
