"""The File menu's half of the main window: sources, recipes, export and persisted settings.

A mixin of `studio.main_window.MainWindow` (it uses the window's state, message bar,
last outcome and settings). Decisions:

* A source image comes from the demo gallery, a file (menu, drop) or a model
  (`draw_source`, in `studio.runs`); a file that cannot be read is reported and the
  current image stays.
* Export writes what the last finished restoration holds, through `engine.io.export`
  (the grid PNG embeds the job's full recipe); the trajectory is exported as x_t and
  x̂0 side by side, frame by frame.
* A grid is magnified (nearest neighbour) by a scale the export dialog offers
  (`GridExportDialog`), by default the smallest that makes a tile at least `GRID_TILE`
  pixels (a 28-px tile at 1× is unreadable); optionally its first row holds the clean
  image, the measurement y (nearest-upsampled to the samples' size), the mean and the
  per-pixel std (scaled so its largest value is white, as the Diversity tab's heat map),
  white tiles filling the row, and the samples follow (`grid_tiles`).
* A file name typed without an extension gets the one of the chosen filter (``.png``
  for grids), so the written file opens by double-click and the recipe reader finds it.
* Opening a recipe (a grid PNG, or the recipe as a JSON object) restores every
  setting; a source that is a demo image or an
  existing file is reloaded, a ``sample:`` source is drawn again, and any other source
  is reported while the current image stays.
* QSettings keep the window geometry, splitters, last folder, the Live switch and the
  last session's recipe, which is re-applied at the next start.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from PySide6.QtWidgets import (QCheckBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QSpinBox)

from studio.preview import LARGE_PIXELS
from studio.state import SAMPLE_PREFIX

IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.tif *.tiff *.bmp);;All files (*)"
GRID_TILE = 128  # px: the default scale makes a grid tile at least this large
EXTRA_TILES = ("clean", "degraded", "mean", "std")


def default_scale(side: int) -> int:
    """The smallest integer magnification that makes a ``side``-pixel tile ≥ `GRID_TILE` px."""
    return max(1, math.ceil(GRID_TILE / max(side, 1)))


def with_extension(path: str, chosen_filter: str) -> str:
    """``path``, or ``path`` plus the first extension of the chosen filter when it has none."""
    if not path or Path(path).suffix:
        return path
    match = re.search(r"\*(\.[A-Za-z0-9]+)", chosen_filter or "")
    return path + match.group(1) if match else path


def grid_tiles(outcome, extras: bool):
    """``(tiles, nrow)`` for `engine.io.export.save_grid`: the samples, after a first row of
    clean, degraded, mean and std tiles when ``extras`` (see the module doc)."""
    import torch
    import torch.nn.functional as F

    result = outcome.result
    samples = result.samples
    n, c, h, w = samples.shape
    nrow = max(len(EXTRA_TILES) if extras else 1, math.ceil(math.sqrt(n)))
    if not extras:
        return samples, nrow

    def fit(image):  # (C', H', W') → (C, H, W): nearest-upsampled, grey expanded to colour
        if image is None:
            return torch.ones(c, h, w)
        image = F.interpolate(image[None].float(), size=(h, w), mode="nearest")[0]
        return image.expand(c, -1, -1) if image.shape[0] == 1 else image[:c]

    std = torch.as_tensor(outcome.std_map, dtype=torch.float32)[None]
    row = [fit(result.clean), fit(result.measurement), samples.mean(0),
           fit(std / max(float(std.max()), 1e-3))]
    row += [torch.ones(c, h, w)] * (nrow - len(row))
    return torch.cat([torch.stack(row), samples]), nrow


class GridExportDialog(QDialog):
    """The grid's scale (nearest neighbour) and whether to add the clean/degraded/mean/std row."""

    def __init__(self, parent, side: int):
        super().__init__(parent)
        self.setWindowTitle("Export sample grid")
        self.scale = QSpinBox()
        self.scale.setRange(1, 32)
        self.scale.setValue(default_scale(side))
        self.scale.setSuffix("×")
        self.scale.setToolTip(f"nearest-neighbour magnification; {default_scale(side)}× makes a "
                              f"{side}-px tile {default_scale(side) * side} px")
        self.extras = QCheckBox("clean, degraded, mean and std tiles first")
        self.extras.setChecked(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok |
                                   QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("scale", self.scale)
        form.addRow("", self.extras)
        form.addRow(buttons)


def pixels_in(path: str) -> int:
    """Width × height from the file's header (0 when it cannot be read: `load_image` says why)."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.size[0] * image.size[1]
    except Exception:  # noqa: BLE001  (the loader reports what is wrong with the file)
        return 0


class FileMenuMixin:
    # -- sources ----------------------------------------------------------------------
    def choose_demo(self, index: int) -> None:
        self.state.set_source(self.catalog.demo_images[index], f"demo:{index}")

    def choose_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open image", self.last_dir, IMAGE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str) -> bool:
        """Load an image file as the source; on failure say why and keep the current one.

        A file of more than `LARGE_PIXELS` pixels is read on the helper thread
        (`studio.background`): True then means "opening" (the views follow)."""
        from engine.io.imageio import load_image
        from engine.core.step import BadInputError

        self.last_dir = str(Path(path).parent)
        if pixels_in(path) > LARGE_PIXELS:
            self.messages.info(f"Opening {Path(path).name}…")
            self.background.call("open", lambda: load_image(path), lambda image: self._opened(path, image))
            return True
        try:
            image = load_image(path)
        except BadInputError as err:
            image = err
        return self._opened(path, image)

    def _opened(self, path: str, image) -> bool:
        from engine.core.step import BadInputError

        if isinstance(image, BadInputError):
            self.messages.error(f"Cannot open the image: {image}. The current image is kept.")
            return False
        if isinstance(image, Exception):
            raise image
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
        path, chosen = QFileDialog.getSaveFileName(self, title, self.last_dir, filters)
        path = with_extension(path, chosen or filters)
        if path:
            self.last_dir = str(Path(path).parent)
        return path

    def choose_export_grid(self) -> None:
        if self.outcome is None:
            self.messages.warning("Nothing to export yet: run a method first.")
            return
        dialog = GridExportDialog(self, max(self.outcome.result.samples.shape[-2:]))
        if dialog.exec() != QDialog.DialogCode.Accepted:
            return
        path = self._save_path("Export sample grid", "PNG (*.png)")
        if path:
            self.export("grid", path, scale=dialog.scale.value(), extras=dialog.extras.isChecked())

    def choose_export_trajectory(self) -> None:
        path = self._save_path("Export trajectory", "GIF (*.gif);;MP4 (*.mp4)")
        if path:
            self.export("trajectory", path)

    def choose_export_metrics(self) -> None:
        path = self._save_path("Export metrics", "CSV (*.csv);;JSON (*.json)")
        if path:
            self.export("metrics", path)

    def export(self, what: str, path: str, scale: int = 1, extras: bool = False) -> bool:
        """Write the last result's grid, trajectory or metrics (engine.io.export formats);
        a grid is magnified ``scale``× and, with ``extras``, starts with `EXTRA_TILES`."""
        from engine.io import export
        from engine.core.step import EngineError

        from studio.views.images import side_by_side

        if self.outcome is None:
            self.messages.warning("Nothing to export yet: run a method first.")
            return False
        result = self.outcome.result
        try:
            if what == "grid":
                tiles, nrow = grid_tiles(self.outcome, extras)
                export.save_grid(path, tiles, result.recipe, nrow=nrow, scale=scale)
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
        path, chosen = QFileDialog.getSaveFileName(self, "Save screenshot", self.last_dir, "PNG (*.png)")
        path = with_extension(path, chosen or "PNG (*.png)")
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
