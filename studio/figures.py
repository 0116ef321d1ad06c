"""Figures for the README from eval reports: ``python -m studio.figures OUT.png EVAL.json…``.

Draws a metric (``--metric``, default ``fd``) against NFE, one curve per method, from
several ``python -m engine eval`` reports of the same task run at different ``--nfe``
(each report is one NFE). Rendered offscreen with pyqtgraph, the library behind the
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

PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1"]


def curves(reports: list[dict], metric: str) -> dict[str, list[tuple[int, float]]]:
    """method → sorted (nfe, metric) points; methods that failed at an NFE skip it."""
    points = defaultdict(list)
    for report in reports:
        for method, row in report["results"].items():
            if metric in row and "nfe" in row:
                points[method].append((int(row["nfe"]), float(row[metric])))
    return {method: sorted(p) for method, p in points.items()}


def draw(points: dict[str, list[tuple[int, float]]], metric: str, title: str, out: Path,
         size: tuple[int, int] = (900, 560)) -> None:
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
    widget.setLogMode(x=True, y=False)
    widget.setLabel("bottom", "network evaluations per sample (NFE)")
    widget.setLabel("left", metric)
    widget.showGrid(x=True, y=True, alpha=0.3)
    for colour, (method, pts) in zip(PALETTE * 3, points.items()):
        xs, ys = zip(*pts)
        pen = pg.mkPen(colour, width=2)
        widget.plot(list(xs), list(ys), pen=pen, symbol="o", symbolBrush=colour, name=method)
    nfes = sorted({x for pts in points.values() for x, _ in pts})
    widget.getAxis("bottom").setTicks([[(math.log10(x), str(x)) for x in nfes]])  # log axis
    widget.show()  # lay out and auto-range before exporting, else the axes lag the data
    app.processEvents()
    pyqtgraph.exporters.ImageExporter(widget.plotItem).export(str(out))
    widget.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.figures", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("reports", nargs="+", type=Path)
    p.add_argument("--metric", default="fd")
    p.add_argument("--title", default="FD-FMNIST against NFE (lower is better)")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        reports = [json.loads(path.read_text()) for path in args.reports]
        points = curves(reports, args.metric)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: cannot read the reports: {err}", file=sys.stderr)
        return 2
    if not points:
        print(f"error: no method in these reports has {args.metric!r}", file=sys.stderr)
        return 2
    draw(points, args.metric, args.title, args.out)
    print(f"{len(points)} curves → {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
