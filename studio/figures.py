"""Figures for the README from eval reports: ``python -m studio.figures OUT.png EVAL.json…``.

Draws a metric (``--metric``, default ``fd``) against NFE, or against a method
parameter swept with ``engine eval --param NAME=VALUE`` (``--x NAME``), one curve per
method, from several ``python -m engine eval`` reports of the same task (each report is
one point). Where a report carries the metric's 95 % interval (``<metric>_ci``) the
point gets an error bar. Rendered offscreen with pyqtgraph, the library behind the
studio's compare plots, so the README's plot and the GUI's look alike.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]


Point = tuple[float, float, tuple[float, float] | None]  # x, value, 95 % interval


def x_value(report: dict, row: dict, x: str) -> float | None:
    if x == "nfe":
        return float(row["nfe"]) if "nfe" in row else None
    value = report.get("config", {}).get("params", {}).get(x)
    return None if value is None else float(value)


def curves(reports: list[dict], metric: str, x: str = "nfe") -> dict[str, list[Point]]:
    """method → sorted (x, metric, interval) points; methods that failed at a point skip it."""
    points = defaultdict(list)
    for report in reports:
        for method, row in report["results"].items():
            position = x_value(report, row, x)
            if metric in row and position is not None:
                ci = row.get(f"{metric}_ci")
                points[method].append((position, float(row[metric]), tuple(ci) if ci else None))
    return {method: sorted(p, key=lambda q: q[0]) for method, p in points.items()}


def draw(points: dict[str, list[Point]], metric: str, title: str, out: Path,
         x: str = "nfe", size: tuple[int, int] = (900, 560)) -> None:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import studio  # noqa: F401  (selects the Qt binding)
    import pyqtgraph as pg
    import pyqtgraph.exporters
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    widget = pg.PlotWidget(background="w")  # per widget: the global config is the app's
    widget.setTitle(title, color="k")
    for side in ("bottom", "left"):
        widget.getAxis(side).setPen("k")
        widget.getAxis(side).setTextPen("k")
    widget.resize(*size)
    legend = widget.addLegend(offset=(-10, 10))
    legend.setLabelTextColor("k")
    log_x = x == "nfe"
    widget.setLogMode(x=log_x, y=False)
    widget.setLabel("bottom", "network evaluations per sample (NFE)" if log_x else x)
    widget.setLabel("left", metric + " (bars: 95 % interval)")
    widget.showGrid(x=True, y=True, alpha=0.3)
    for colour, (method, pts) in zip(PALETTE * 3, points.items()):
        xs, ys, cis = zip(*pts)
        shown = [math.log10(v) for v in xs] if log_x else list(xs)
        pen = pg.mkPen(colour, width=2)
        widget.plot(list(xs), list(ys), pen=pen, symbol="o", symbolBrush=colour, name=method)
        bars = [(sx, y, ci) for sx, y, ci in zip(shown, ys, cis) if ci is not None]
        if bars:  # ErrorBarItem draws in view coordinates: log10(x) on a log axis
            bx, by, bci = zip(*bars)
            widget.addItem(pg.ErrorBarItem(x=np.array(bx), y=np.array(by),
                                           top=np.array([c[1] - y for y, c in zip(by, bci)]),
                                           bottom=np.array([y - c[0] for y, c in zip(by, bci)]),
                                           beam=0.03 if log_x else 0.02, pen=pen))
    ticks = sorted({p[0] for pts in points.values() for p in pts})
    if log_x:
        widget.getAxis("bottom").setTicks([[(math.log10(v), f"{v:g}") for v in ticks]])
    else:
        widget.getAxis("bottom").setTicks([[(v, f"{v:g}") for v in ticks]])
    widget.show()  # lay out and auto-range before exporting, else the axes lag the data
    app.processEvents()
    pyqtgraph.exporters.ImageExporter(widget.plotItem).export(str(out))
    widget.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.figures", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--metric", default="fd")
    p.add_argument("--x", default="nfe", help="nfe, or a parameter swept with eval --param")
    p.add_argument("--title", default="FD-FMNIST against NFE (lower is better)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        reports = [json.loads(path.read_text()) for path in args.reports]
        points = curves(reports, args.metric, args.x)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: cannot read the reports: {err}", file=sys.stderr)
        return 2
    if not points:
        print(f"error: no method in these reports has {args.metric!r}", file=sys.stderr)
        return 2
    draw(points, args.metric, args.title, args.out, args.x)
    print(f"{len(points)} curves → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
