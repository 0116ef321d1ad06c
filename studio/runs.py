"""The window's running half: submitting jobs and showing what the engine thread sends.

A mixin of `studio.main_window.MainWindow`. The engine thread (`studio.worker`) relays
a job's events; here they become pixels: live x_t / x̂0 canvases and the trajectory
while it runs, the result, its error map and the diversity gallery when it ends.
Decisions:

* The request is built from the state (`StudioState.request`); a bad setting is
  said on the message bar, not raised.
* Other tasks (compare grid, playground, drawing a source) share the progress bar
  and status line; their own views draw their events.
* The frame thumbnails are the job's own (`engine.core.jobs.Job.latest_frame`): made
  once per step, on the engine thread.
* Provenance: every restoration submitted is a numbered `Run`, and every view of one
  says which (a caption on each canvas's corner, "run 3 · ddim@vp · seed 0", with the
  samples and degradation in its tooltip; the gallery's summary). When the settings differ from
  those of the run shown the caption turns amber. A new working image clears the
  result, error, live canvases and gallery (they belong to another image); a failed
  run clears the live canvases (its partial frames are no result); a stopped one
  keeps its last frame, captioned "stopped". A run's error stays on the message bar
  until a later restoration succeeds (or the user dismisses it).
* Counters are the job's: the progress bar counts the job's own steps (`Step.total`:
  397 when DDPM restores from level 397 of 1000), the NFE it will run is the job's
  count so far extrapolated over its steps (exact at the end: ``metrics["nfe"]``), and
  NFE/s excludes paused time (`studio.tasks.Frame.elapsed`). After a stop the bar stays
  where the job stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from studio.state import SAMPLE_PREFIX
from studio.views.diversity import format_metrics
from studio.views.trajectory import TrajectoryFrame

LIVE_CANVASES = ("live x_t", "live x̂0")
RESULT_CANVASES = ("result", "|result − clean|")


@dataclass(frozen=True)
class Run:
    """One submitted restoration, as its views name it."""

    number: int
    label: str  # "ddim@vp"
    seed: int
    n: int
    degradation: str
    settings: dict | None  # `StudioState.to_recipe()` when it was submitted

    @property
    def caption(self) -> str:
        return f"run {self.number} · {self.label} · seed {self.seed}"

    @property
    def description(self) -> str:
        return (f"run {self.number}: {self.label} · seed {self.seed} · {self.n} sample(s) · "
                f"{self.degradation}")


class RunMixin:
    def draw_source(self, model: str, seed: int) -> None:
        """Generate a source image from a model on the engine thread."""
        from engine.core.jobs import Request

        samplers = self.catalog.samplers_for(model)
        method = "ddim" if "ddim" in samplers else samplers[0]
        request = Request(method=f"{method}@{model}", seed=seed, n=1,
                          source=f"{SAMPLE_PREFIX}{method}@{model}:seed={seed}")
        self.controller.submit(request, purpose="draw")

    def _build_runs(self) -> None:
        self._runs: dict[int, Run] = {}  # ticket id → run
        self._run_count = 0
        self._shown: Run | None = None  # the run on the result canvases and the gallery
        self._live: Run | None = None  # the run on the live canvases
        self._live_suffix = ""  # " · stopped" once the live run was stopped
        self._run_error: str | None = None  # the message bar's text for a run's error

    def run_job(self) -> None:
        from engine.core.step import BadInputError

        if self.catalog is None or self.working is None:
            return
        try:
            request = self.state.request(shape_of=self.catalog.fitted_shape)
        except BadInputError as err:
            self._report_run_error(str(err))
            return
        ticket = self.controller.submit(request)
        self._run_count += 1
        degradation = request.degradation.spec() if request.degradation else "no degradation"
        self._runs[ticket.id] = Run(self._run_count, ticket.label, request.seed, request.n,
                                    degradation, self._settings())
        self._run_started = time.perf_counter()

    def _settings(self) -> dict | None:
        from engine.core.step import BadInputError

        try:
            return self.state.to_recipe()
        except BadInputError:
            return None

    # -- which run each view shows ----------------------------------------------------
    def _caption(self, names, run: Run | None, suffix: str = "", prefix: str = "") -> None:
        stale = run is not None and self._settings() != run.settings
        tip = "" if run is None else run.description + (
            " — the settings have changed since; Run to update" if stale else "")
        text = "" if run is None else f"{prefix}{run.caption}{suffix}"
        for name in names:
            self.canvases[name].set_caption(text, tip, stale)
        return stale, tip

    def mark_stale(self) -> None:
        """Re-caption the views: amber where the settings changed since their run."""
        self._caption(LIVE_CANVASES, self._live, self._live_suffix)
        self._caption_results()

    def _caption_results(self) -> None:
        stale, tip = self._caption(RESULT_CANVASES, self._shown)
        if self.outcome is None:
            return
        canvas = self.canvases["result"]
        canvas.title_label.setText(f"<b>result</b> #{self.selected}")
        canvas.title_label.setToolTip(f"sample {self.selected} of {len(self.outcome.result.samples)} "
                                      f"(click a tile in the Diversity tab to show another)\n{tip}")
        self.diversity.set_caption(self._shown.caption if self._shown else "", tip, stale)

    def clear_results(self) -> None:
        """Forget the views of earlier runs (a new working image makes them another image's)."""
        self.outcome, self._shown, self._live = None, None, None
        for name in RESULT_CANVASES + LIVE_CANVASES:
            self.canvases[name].set_image(None)
            self.canvases[name].set_badge("")
        self.canvases["result"].set_split(None)
        self._caption(RESULT_CANVASES + LIVE_CANVASES, None)
        self.diversity.clear()
        self.trajectory.clear()

    def _report_run_error(self, text: str) -> None:
        self.messages.error(text)
        self._run_error = self.messages.label.text()

    def _settle_run_error(self) -> None:
        """A restoration succeeded: the error of an earlier one no longer holds."""
        if self._run_error is not None and self.messages.level == "error" and \
                self.messages.label.text() == self._run_error:
            self.messages.dismiss()
        self._run_error = None

    def _on_event(self, ticket, event) -> None:
        """Progress of the other tasks (compare grid, playground); their views draw them."""
        self.progress.setMaximum(event.total)
        self.progress.setValue(event.index + 1)

    def _on_started(self, ticket) -> None:
        what = "Drawing a source image with" if ticket.purpose == "draw" else "Running"
        self._set_status(f"{what} {ticket.label}…")
        self.progress.setFormat("%p%")
        self.progress.setValue(0)
        if ticket.purpose == "restore":
            self.trajectory.clear()

    def _on_prepared(self, ticket, prepared) -> None:
        if ticket.purpose != "restore":
            return
        clean = self.canvases["clean"].array
        frames = [TrajectoryFrame(f"level {k}/{len(prepared.forward) - 1}", t, x, clean)
                  for k, (t, x) in enumerate(prepared.forward)]
        self.trajectory.set_forward(frames, "this method uses no prior" if not frames else "")

    def _on_frame(self, ticket, frame) -> None:
        self.progress.setMaximum(frame.total)
        self.progress.setValue(frame.index + 1)
        self.progress.setFormat("step %v/%m")
        planned = round(frame.nfe / (frame.index + 1) * frame.total)  # the job's count, extrapolated
        cost = f" · NFE {frame.nfe}/{planned} · {frame.nfe_rate:.0f} NFE/s" if frame.nfe else ""
        self._set_status(f"{ticket.label}: step {frame.index + 1}/{frame.total} · "
                         f"ETA {frame.eta:.1f} s{cost}")
        if ticket.purpose != "restore":
            return
        run = self._runs.get(ticket.id)
        if run is not None and run is not self._live:
            self._live, self._live_suffix = run, ""
            self._caption(LIVE_CANVASES, run)
            if frame.nfe:
                self.method_panel.nfe_label.setText(f"NFE: {planned} in run {run.number} "
                                                    f"({frame.total} steps)")
        t = "" if frame.t != frame.t else f"t = {frame.t:.3f}"
        self.canvases["live x_t"].set_image(frame.x_t)
        self.canvases["live x_t"].set_badge(t)
        self.canvases["live x̂0"].set_image(frame.x0_hat)
        self.canvases["live x̂0"].set_badge("" if frame.psnr is None else f"PSNR {frame.psnr:.1f} dB")
        self.trajectory.append(TrajectoryFrame(f"step {frame.index + 1}/{frame.total}",
                                               frame.t, frame.x_t, frame.x0_hat))

    def _on_finished(self, ticket, outcome) -> None:
        self.progress.setValue(self.progress.maximum())
        if ticket.purpose in ("compare", "playground"):
            self._set_status(f"Done: {ticket.label}.")
            return
        result = outcome.result
        if ticket.purpose == "draw":
            self.state.set_source(result.samples[0], ticket.request.source)
            self._set_status(f"Drew a source image with {ticket.label}.")
            return
        self.outcome = outcome
        self._shown = self._runs.get(ticket.id)
        self._settle_run_error()
        self.trajectory.set_reverse([
            TrajectoryFrame(f"frame {k + 1}/{len(result.trajectory)}", t, x_t, x0)
            for k, (t, x_t, x0) in enumerate(result.trajectory)])
        self.diversity.set_outcome(outcome)
        self.show_sample(0)
        if self._shown is not None:
            self.method_panel.nfe_label.setText(f"NFE: {result.metrics['nfe']} in run {self._shown.number}")
        m = result.metrics
        how = "Stopped early; kept x̂0" if result.stopped else "Done"
        self._set_status(f"{how}: {ticket.label}, {m['n']} sample(s), NFE {m['nfe']}, "
                         f"{m['seconds']:.2f} s.")

    def _on_paused(self, paused: bool) -> None:
        self.method_panel.set_paused(paused)
        if paused:
            self._set_status(self.status_text.text() + " · paused")

    def _on_failed(self, ticket, message: str) -> None:
        self.progress.setFormat("failed at step %v/%m")
        named = message.startswith(ticket.label)  # the registry's messages name method@model
        text = message if named else f"{ticket.label}: {message}"
        if ticket.purpose != "restore":
            self.messages.error(text)
        else:
            self._report_run_error(text)
            self._live = None
            for name in LIVE_CANVASES:  # a failed run's partial frames are no result
                self.canvases[name].set_image(None)
                self.canvases[name].set_badge("")
            self._caption(LIVE_CANVASES, None)
        self._set_status(f"Failed: {ticket.label}.")

    def _on_cancelled(self, ticket) -> None:
        self.progress.setFormat("stopped at step %v/%m")  # where it stopped, never 100 %
        self._set_status(f"Stopped {ticket.label}.")
        if ticket.purpose == "restore" and self._live is self._runs.get(ticket.id):
            self._live_suffix = " · stopped"
            self._caption(LIVE_CANVASES, self._live, self._live_suffix)

    def show_sample(self, k: int) -> None:
        if self.outcome is None:
            return
        samples = self.outcome.result.samples
        self.selected = min(k, len(samples) - 1)
        sample = samples[self.selected]
        canvas = self.canvases["result"]
        self._caption_results()
        canvas.set_image(sample)
        psnrs, ssims = self.outcome.sample_psnr, self.outcome.sample_ssim
        canvas.set_badge(format_metrics(psnrs[self.selected], ssims[self.selected] if ssims else None)
                         if psnrs else "")
        clean = self.outcome.result.clean
        comparable = clean is not None and clean.shape == sample.shape
        canvas.set_split(clean if comparable and self.split.isChecked() else None)
        error = self.canvases["|result − clean|"]
        if comparable:
            diff = (sample - clean).abs().mean(0).numpy()
            error.set_image(diff, levels=(0.0, max(float(diff.max()), 1e-3)))
        else:
            error.set_image(None)

    def _set_busy(self, busy: bool) -> None:
        self.method_panel.set_busy(busy)
        for action in (self.stop_action, self.keep_action, self.pause_action):
            action.setEnabled(busy)

