"""The File menu's half of the main window: sources, recipes, export and persisted settings.

A mixin of `studio.main_window.MainWindow` (it uses the window's state, message bar,
last outcome and settings). Decisions:

* A source image comes from the demo gallery, a file (menu, drop) or a model
  (`draw_source`, in `studio.runs`); a file that cannot be read is reported and the
  current image stays.
* Export writes what the last finished restoration holds, through `engine.io.export`
  (the grid PNG embeds the job's full recipe); the trajectory is exported as x_t and
  x̂0 side by side, frame by frame.
* Opening a recipe (a grid PNG, or the recipe as a JSON object) restores every
  setting; a source that is a demo image or an
  existing file is reloaded, a ``sample:`` source is drawn again, and any other source
  is reported while the current image stays.
* QSettings keep the window geometry, splitters, last folder, the Live switch and the
  last session's recipe, which is re-applied at the next start.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from studio.state import SAMPLE_PREFIX

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"


class FileMenuMixin:
    # -- sources ----------------------------------------------------------------------
    def choose_demo(self, index: int) -> None:
        self.state.set_source(self.catalog.demo_images[index], f"demo:{index}")

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.last_dir, IMAGE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Load an image file as the source; on failure say why and keep the current one."""
        from engine.io.imageio import load_image
        from engine.core.step import BadInputError

        self.last_dir = str(Path(path).parent)
        try:
            image = load_image(path)
        except BadInputError as err:
            self.messages.error(f"Cannot open the image: {err}. The current image is kept.")
            return False
        self.state.set_source(image, str(path))
        self.messages.info(f"Opened {Path(path).name}.")
        return True

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            self.open_path(paths[0])

    # -- recipes and export -------------------------------------------------------------
    def choose_recipe(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open recipe", self.last_dir,
                                              "Recipes (*.png *.json);;All files (*)")
        if path:
            self.open_recipe(path)

    def open_recipe(self, path: str) -> bool:
        from engine.io.export import read_recipe
        from engine.core.step import EngineError

        try:
            if Path(path).suffix.lower() == ".json":
                recipe = json.loads(Path(path).read_text(encoding="utf-8"))
            else:
                recipe = read_recipe(path)
            restored = self.state.apply_recipe(recipe)
        except RecursionError:
            self.messages.error(f"Cannot read the recipe in {Path(path).name}: it is nested too deeply")
            return False
        except (EngineError, OSError, ValueError) as err:
            self.messages.error(f"Cannot read the recipe in {Path(path).name}: {err}")
            return False
        source = str(recipe.get("source") or "")
        if source.startswith(SAMPLE_PREFIX):
            self._redraw(source)
        elif not restored:
            named = repr(source) if len(source) <= 120 else f"{source[:100]!r}… ({len(source)} characters)"
            self.messages.warning(f"Restored the settings of {Path(path).name}; its source "
                                  f"image {named} is not available, so the current image is kept.")
            return True
        legacy = (" Its measurement noise uses the legacy scheme v1 (shared with sample k when "
                  "seed + k = measurement seed), as recorded, so the result reproduces."
                  if self.state.degradation.measurement_noise == "v1" else "")
        self.messages.info(f"Restored the settings of {Path(path).name}.{legacy}")
        return True

    def _redraw(self, source: str) -> None:
        """Re-generate a ``sample:METHOD@MODEL:seed=S`` source (the current image stays meanwhile)."""
        spec, _, seed = source[len(SAMPLE_PREFIX):].rpartition(":seed=")
        model = spec.partition("@")[2]
        if model in self.catalog.models and seed.isdigit():
            self.draw_source(model, int(seed))
        else:
            self.messages.warning(f"Cannot draw the source {source!r} again: model {model!r} "
                                  "is not available. The current image is kept.")

    def _save_path(self, title: str, filters: str) -> str:
        if self.outcome is None:
            self.messages.warning("Nothing to export yet: run a method first.")
            return ""
        path, _ = QFileDialog.getSaveFileName(self, title, self.last_dir, filters)
        if path:
            self.last_dir = str(Path(path).parent)
        return path

    def choose_export_grid(self) -> None:
        path = self._save_path("Export sample grid", "PNG (*.png)")
        if path:
            self.export("grid", path)

    def choose_export_trajectory(self) -> None:
        path = self._save_path("Export trajectory", "GIF (*.gif);;MP4 (*.mp4)")
        if path:
            self.export("trajectory", path)

    def choose_export_metrics(self) -> None:
        path = self._save_path("Export metrics", "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export("metrics", path)

    def export(self, what: str, path: str) -> bool:
        """Write the last result's grid, trajectory or metrics (engine.io.export formats)."""
        from engine.io import export
        from engine.core.step import EngineError

        from studio.views.images import side_by_side

        if self.outcome is None:
            self.messages.warning("Nothing to export yet: run a method first.")
            return False
        result = self.outcome.result
        try:
            if what == "grid":
                export.save_grid(path, result.samples, result.recipe)
            elif what == "trajectory":
                export.save_trajectory(path, [side_by_side(x_t, x0) for _, x_t, x0 in result.trajectory])
            else:
                export.save_metrics(path, self.metric_rows())
        except (EngineError, OSError) as err:
            self.messages.error(f"Export failed: {err}")
            return False
        self.messages.info(f"Wrote {path}.")
        return True

    def metric_rows(self) -> list[dict]:
        """One row per sample (seed, PSNR, SSIM) plus the run's own metrics."""
        o, recipe = self.outcome, self.outcome.result.recipe
        summary = {k: v for k, v in o.result.metrics.items() if not isinstance(v, (list, dict))}
        rows = []
        for k in range(len(o.result.samples)):
            row = {"sample": k, "seed": recipe["seed"] + k, "method": recipe["method"],
                   "model": recipe["model"] or "", "degradation": recipe["degradation"]}
            if o.sample_psnr:
                row.update(psnr=o.sample_psnr[k])
            if o.sample_ssim:  # SSIM is undefined below its 11-pixel window
                row.update(ssim=o.sample_ssim[k])
            rows.append({**row, **{f"run_{k2}": v for k2, v in summary.items()}})
        return rows

    def choose_screenshot(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save screenshot", self.last_dir, "PNG (*.png)")
        if path:
            self.save_screenshot(path)

    def save_screenshot(self, path: str) -> bool:
        """The window as a PNG, written atomically (an existing file is never truncated)."""
        from engine.io.export import atomic_write, check_folder
        from engine.core.step import EngineError

        image = self.grab()

        def write(tmp: Path) -> None:
            if not image.save(str(tmp), "PNG"):
                raise OSError(0, "the screenshot could not be encoded")
        try:
            target = check_folder(path)
            if target.suffix.lower() != ".png":
                self.messages.error(f"Cannot write {target.name}: screenshots are .png files.")
                return False
            atomic_write(target, write)
        except EngineError as err:
            self.messages.error(f"Screenshot failed: {err}")
            return False
        self.messages.info(f"Wrote {path}.")
        return True

    # -- settings ---------------------------------------------------------------------
    def _restore_window_settings(self) -> None:
        s = self.settings
        if s is None:
            return
        if s.value("window/geometry") is not None:
            self.restoreGeometry(s.value("window/geometry"))
        for key, splitter in (("window/main_split", self.main_split), ("window/right_split", self.right_split)):
            if s.value(key) is not None:
                splitter.restoreState(s.value(key))
        self.last_dir = str(s.value("paths/last_dir", self.last_dir))
        self.method_panel.live.setChecked(s.value("run/live", "true") in (True, "true"))

    def _restore_session(self) -> bool:
        """Re-apply the last session's recipe; False when there is none or it fails."""
        from engine.core.step import EngineError

        text = self.settings.value("session/recipe") if self.settings is not None else None
        if not text:
            return False
        try:
            recipe = json.loads(text)
            if recipe.get("method") not in self.catalog.methods:
                return False
            if not self.state.apply_recipe(recipe):
                self.choose_demo(0)
                if str(recipe.get("source", "")).startswith(SAMPLE_PREFIX):
                    self._redraw(recipe["source"])
        except (ValueError, TypeError, EngineError, OSError):
            return False
        return True

    def save_settings(self) -> None:
        s = self.settings
        if s is None:
            return
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/main_split", self.main_split.saveState())
        s.setValue("window/right_split", self.right_split.saveState())
        s.setValue("paths/last_dir", self.last_dir)
        s.setValue("run/live", "true" if self.method_panel.live.isChecked() else "false")
        if self.catalog is not None:
            s.setValue("session/recipe", json.dumps(self.state.to_recipe()))
        s.sync()
