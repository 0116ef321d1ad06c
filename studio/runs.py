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
"""

from __future__ import annotations

import time

from studio.state import SAMPLE_PREFIX
from studio.views.diversity import format_metrics
from studio.views.trajectory import TrajectoryFrame


class RunMixin:
    def draw_source(self, model: str, seed: int) -> None:
        """Generate a source image from a model on the engine thread."""
        from engine.core.jobs import Request

        samplers = self.catalog.samplers_for(model)
        method = "ddim" if "ddim" in samplers else samplers[0]
        request = Request(method=f"{method}@{model}", seed=seed, n=1,
                          source=f"{SAMPLE_PREFIX}{method}@{model}:seed={seed}")
        self.controller.submit(request, purpose="draw")

    def run_job(self) -> None:
        from engine.core.step import BadInputError

        if self.catalog is None or self.working is None:
            return
        try:
            request = self.state.request(shape_of=self.catalog.model_shape)
        except BadInputError as err:
            self.messages.error(str(err))
            return
        self.controller.submit(request)
        self._run_started = time.perf_counter()

    def _on_event(self, ticket, event) -> None:
        """Progress of the other tasks (compare grid, playground); their views draw them."""
        self.progress.setMaximum(event.total)
        self.progress.setValue(event.index + 1)

    def _on_started(self, ticket) -> None:
        what = "Drawing a source image with" if ticket.purpose == "draw" else "Running"
        self._set_status(f"{what} {ticket.label}…")
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
        rate = f" · {frame.nfe_rate:.0f} NFE/s" if frame.nfe else ""
        self._set_status(f"{ticket.label}: step {frame.index + 1}/{frame.total} · "
                         f"ETA {frame.eta:.1f} s{rate}")
        if ticket.purpose != "restore":
            return
        t = "" if frame.t != frame.t else f"t = {frame.t:.3f}"
        self.canvases["live x_t"].set_image(frame.x_t)
        self.canvases["live x_t"].set_badge(t)
        self.canvases["live x̂0"].set_image(frame.x0_hat)
        self.canvases["live x̂0"].set_badge("" if frame.psnr is None else f"PSNR {frame.psnr:.1f} dB")
        self.trajectory.append(TrajectoryFrame(f"step {frame.index + 1}/{frame.total}",
                                               frame.t, frame.x_t, frame.x0_hat))

    def _on_finished(self, ticket, outcome) -> None:
        if ticket.purpose in ("compare", "playground"):
            self._set_status(f"Done: {ticket.label}.")
            return
        result = outcome.result
        if ticket.purpose == "draw":
            self.state.set_source(result.samples[0], ticket.request.source)
            self._set_status(f"Drew a source image with {ticket.label}.")
            return
        self.outcome = outcome
        self.trajectory.set_reverse([
            TrajectoryFrame(f"frame {k + 1}/{len(result.trajectory)}", t, x_t, x0)
            for k, (t, x_t, x0) in enumerate(result.trajectory)])
        self.diversity.set_outcome(outcome)
        self.show_sample(0)
        m = result.metrics
        how = "Stopped early; kept x̂0" if result.stopped else "Done"
        self._set_status(f"{how}: {ticket.label}, {m['n']} sample(s), NFE {m['nfe']}, "
                         f"{m['seconds']:.2f} s.")

    def _on_paused(self, paused: bool) -> None:
        self.method_panel.set_paused(paused)
        if paused:
            self._set_status(self.status_text.text() + " · paused")

    def _on_failed(self, ticket, message: str) -> None:
        named = message.startswith(ticket.label)  # the registry's messages name method@model
        self.messages.error(message if named else f"{ticket.label}: {message}")
        self._set_status(f"Failed: {ticket.label}.")

    def show_sample(self, k: int) -> None:
        if self.outcome is None:
            return
        samples = self.outcome.result.samples
        self.selected = min(k, len(samples) - 1)
        sample = samples[self.selected]
        canvas = self.canvases["result"]
        canvas.title_label.setText(f"<b>result</b> #{self.selected}")
        canvas.title_label.setToolTip(f"sample {self.selected} of {len(samples)} "
                                      "(click a tile in the Diversity tab to show another)")
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
        if not busy:
            self.progress.setValue(self.progress.maximum())
