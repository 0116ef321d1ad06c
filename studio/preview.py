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
* The degraded preview is computed with the engine's one measurement function,
  `engine.core.operators.measure_image`, with the same seed as the job: the preview
  *is* the job's y. It costs well under a millisecond at 28×28 and is computed on the
  GUI thread up to `LARGE_PIXELS` (a 1024×1024 image), so a slider and its preview
  move in the same frame. A larger image is converted and measured on the helper
  thread (`studio.background`, latest wins); the canvases say "converting…" /
  "computing y…" until it is done, and show it as every k-th pixel
  (`studio.views.images.display_stride`). Opening a 6000×6000 photo blocked the GUI
  thread for minutes (its blur alone: 128 s, the engine's dense exact operator).
* The heap keeps the preview's freed buffers (`keep_freed_buffers`, set with the torch
  thread count): returned to the kernel and faulted in again, they cost more than the blur.
* The GUI thread computes previews with one intra-op torch thread (`MainWindow.load_engine`
  sets it; it acts on this thread only): a preview is small
  work, and a second thread that waits for a busy core turned 0.02 ms operations into
  ≈100 ms ones on the shared 2-core machine (see `studio.worker`).
* Its PSNR badge (of y, or of A⁺y when y is smaller) waits until the slider rests
  (`BADGE_DELAY_MS`); while it moves the badge says "PSNR …", never a stale figure.
* The formula line writes the measurement model with A as its composition, in the
  order the operators act, once the slider rests too: a new text in its word-wrapped
  label relaid the window out, 2 ms of every 512×512 RGB slider move (issue 14: the
  preview within one 16 ms frame).
* Slider moves recompute only what they changed: the measurement keeps a
  `engine.core.operators.StageMemo` (one for the GUI thread, one for the helper's), so
  σ_y redraws only the noise and the mask reuses the blur before it.
"""

from __future__ import annotations

import time

from superqt.utils import QSignalDebouncer, QSignalThrottler

from studio.background import Background
from studio.state import working_image

LIVE_INTERVAL_MS = 40  # at most 25 live re-runs per second while a slider moves
LIVE_PATIENCE_MS = 250  # a live run younger than this finishes before the next starts
BADGE_DELAY_MS = 120
LARGE_PIXELS = 1024 * 1024  # above this, conversion and preview run off the GUI thread
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters (malloc.h)
HEAP_MMAP_ABOVE = 32 << 20  # buffers below this come from the heap, not fresh mappings
HEAP_KEEP = 128 << 20  # free memory the heap keeps instead of handing it back to the kernel


class PreviewMixin:
    def _build_preview(self) -> None:
        self.live_throttler = QSignalThrottler(parent=self)  # leading and trailing runs
        self.live_throttler.setTimeout(LIVE_INTERVAL_MS)
        self.live_throttler.triggered.connect(self._live_rerun)
        self._live_pending = False  # the settings changed while a young live run ran
        self._run_started = 0.0  # perf_counter() when the last restoration was submitted
        self.badge_debouncer = QSignalDebouncer(self)
        self.badge_debouncer.setTimeout(BADGE_DELAY_MS)
        self.badge_debouncer.triggered.connect(self._preview_rested)
        self._preview = None  # (operator, y, x, formula) of the last preview, until it rests
        self._stages = None  # (the GUI thread's, the helper thread's) `StageMemo`, made on first use
        self.background = Background(self)

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
        if self.method_panel.refuses_live_run():  # it says why in its own calm line
            return
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
            if not self.method_panel.refuses_live_run():
                self.run_job()

    # -- inputs → previews ------------------------------------------------------------
    def _ready(self) -> bool:
        return self.catalog is not None and self.state.source.image is not None

    def _working_image_changed(self) -> None:
        """The source or the model changed: convert the image; preview if it changed."""
        if not self._ready():
            return
        source = self.state.source.image
        shape = self._model_shape(tuple(source.shape))
        if is_large(source):  # off the GUI thread; the views follow when it is done
            self.canvases["clean"].set_badge("converting…")
            self.background.call("working", lambda: convert_source(source, shape),
                                 self._working_image_ready)
        else:
            self.background.cancel("working")
            self._working_image_ready(convert_source(source, shape))
        self._inputs_changed()

    def _working_image_ready(self, converted) -> None:
        if isinstance(converted, Exception):
            raise converted
        if self._update_working_image(*converted):
            self.clear_results()  # they showed another image
            self.update_preview()

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

    def _model_shape(self, source_shape):
        info = self.catalog.methods.get(self.state.method.method)
        if not (info and info.needs_prior):
            return None
        return self.catalog.fitted_shape(self.state.method.model, source_shape)

    def _update_working_image(self, image, note: str, shown) -> bool:
        """Show the source converted for the chosen model; True if the working image changed."""
        self._source_note = note
        self._show_source()
        self.canvases["clean"].set_badge("")
        if self.working is not None and image.shape == self.working.shape and (
                image is self.working or not is_large(image) and bool((image == self.working).all())):
            return False
        self.working = image
        c, h, w = image.shape
        self.canvases.set_extent(w, h)
        self.trajectory.set_extent(w, h)
        self.canvases["clean"].set_image(image, shown=shown)
        if is_large(image):  # its preview takes a while: not the last image's meanwhile
            self.canvases["degraded"].set_image(None)
        self.degradation_panel.set_image_shape((c, h, w))
        return True

    def _show_source(self) -> None:
        if self.state.source.image is not None:
            self.source_panel.set_source(self.state.source.name, tuple(self.state.source.image.shape),
                                         self._source_note)

    def update_preview(self) -> None:
        """The measurement y of the current settings, exactly as the job will draw it
        (off the GUI thread for a large image: the canvas says "computing y…" meanwhile)."""
        from engine.core.operators import StageMemo
        from engine.core.step import BadInputError

        x = self.working[None]
        d = self.state.degradation
        gui_stages, large_stages = self._stages = self._stages or (StageMemo(), StageMemo())
        try:
            degradation = d.degradation()
        except BadInputError as err:
            self._show_preview_error(err)
            return
        seed, scheme = d.measurement_seed, d.measurement_noise
        if is_large(x):
            self.canvases["degraded"].set_badge("computing y…")
            self.background.call("preview", lambda: measure_preview(x, degradation, seed, scheme, True,
                                                                    large_stages),
                                 lambda measured: self._show_preview(degradation, x, measured))
            return
        self.background.cancel("preview")
        try:
            measured = measure_preview(x, degradation, seed, scheme, False, gui_stages)
        except BadInputError as err:
            self._show_preview_error(err)
            return
        self._show_preview(degradation, x, measured)

    def _show_preview_error(self, err) -> None:
        self.degradation_panel.set_description(f"<span style='color:#e06c6c'>{err}</span>")
        self.canvases["degraded"].set_badge("invalid")
        self._preview = None

    def _show_preview(self, degradation, x, measured) -> None:
        from engine.core.step import BadInputError

        if isinstance(measured, BadInputError):
            self._show_preview_error(measured)
            return
        if isinstance(measured, Exception):
            raise measured
        op, y, shown, badge = measured
        canvas = self.canvases["degraded"]
        canvas.set_image(y[0], shown=shown)
        _, c, h, w = y.shape
        applied = op.describe()
        model = "y = x + σ_y ε" if applied == "noise" else f"y = A x + σ_y ε, A = {applied}"
        self._preview = (op, y, x, f"{model} · y is {w}×{h}×{c} · spec <tt>{degradation.spec()}</tt>")
        if badge is None:
            canvas.set_badge("PSNR …")  # never a stale figure while the slider moves
            self.badge_debouncer.throttle()
        else:
            canvas.set_badge(badge)
            self.degradation_panel.set_description(self._preview[3])

    def _preview_rested(self) -> None:
        """The slider rests: the PSNR badge and the formula line of the preview shown."""
        if self._preview is None or is_large(self._preview[2]):  # (a large one's came with it)
            return
        op, y, x, formula = self._preview
        self.degradation_panel.set_description(formula)
        self.canvases["degraded"].set_badge(preview_badge(op, y, x))


def keep_freed_buffers() -> bool:
    """Let glibc reuse the preview's freed buffers instead of returning them to the kernel.

    Every slider move allocates and frees a dozen 3 MB tensors at 512×512 RGB (blur
    blocks, y, the display copy). glibc's adaptive thresholds handed them back and
    faulted them in again: 1358 page faults and 3.2 ms of kernel time per blur → mask →
    noise measurement at 512×512 RGB. Fixed thresholds keep up to `HEAP_KEEP` free in the
    heap. In `studio.bench`'s preview, two runs each without / with it: page faults per
    blur move 808, 231 → 2, 66 and the GUI thread's CPU p95 16.8, 16.6 → 12.6, 9.9 ms
    (mask level 23.2, 27.2 → 10.5, 8.6 ms). Small allocations that land in a freed
    buffer still make the heap grow now and then, so a move may still fault. Returns
    False where the C library has no ``mallopt`` (not glibc): nothing changes there."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, HEAP_MMAP_ABOVE)) and bool(mallopt(M_TRIM_THRESHOLD, HEAP_KEEP))


def is_large(image) -> bool:
    """Too large to convert or measure on the GUI thread within a frame."""
    return image is not None and image.shape[-2] * image.shape[-1] > LARGE_PIXELS


def convert_source(source, shape):
    """``(working image, note, display array)`` for a model's shape (any thread)."""
    from studio.views.canvas import DISPLAY_MAX
    from studio.views.images import display_array

    image, note = working_image(source, shape)
    return image, note, display_array(image, DISPLAY_MAX) if is_large(image) else None


def measure_preview(x, degradation, seed, scheme, with_badge: bool, memo=None):
    """``(op, y, display array, badge)`` of the job's measurement of x (any thread; a
    `StageMemo` keeps the stages a slider did not change)."""
    from engine.core.operators import measure_image
    from studio.views.canvas import DISPLAY_MAX
    from studio.views.images import display_array

    op, y = measure_image(degradation, x, seed, scheme, memo)
    shown = display_array(y[0], DISPLAY_MAX) if is_large(y) else None
    return op, y, shown, preview_badge(op, y, x) if with_badge else None


def preview_badge(op, y, x) -> str:
    """PSNR of y against x (of A⁺y when y is smaller)."""
    from engine.evaluation.metrics import psnr

    same = y.shape == x.shape
    shown, label = (y, "y") if same else (op.pinv(y), "A⁺y")
    return f"{label}: PSNR {float(psnr(shown.clamp(0, 1), x)):.1f} dB"
