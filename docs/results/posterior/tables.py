"""The README's DPS/RMP tables from the `engine eval` JSON files in this folder.

``python docs/results/posterior/tables.py [DIR]``: one table per task (each method's
metrics with 95 % intervals, NFE, VJPs, seconds per image of the batched run) and the
paired PSNR difference of every RMP row against DPS on the same images with its
three-valued verdict ("positive = RMP better").
"""

import json
import sys
from pathlib import Path

from engine.evaluation import uncertainty
from engine.evaluation.uncertainty import format_interval, with_interval

TASKS = ["denoise", "sr2", "sr4", "deblur", "inpaint-box", "inpaint-random"]
# file suffix → row label; "" (both), "-dps", "-rmp": dps@vp and rmp@vp at 100 NFE
RUNS = {"": None, "-dps": None, "-rmp": None, "-rmp10": "rmp@vp, 10 NFE, defaults",
        "-rmp10t": "rmp@vp, 10 NFE, VP, start=tweedie, s1=0.5",
        "-ve11": "rmp@vp, 10 NFE, VE, start=tweedie, s1=0.9, ζ=1",
        "-ve31": "rmp@vp, 30 NFE, VE, start=tweedie, s1=0.9, ζ=1",
        "-ve101": "rmp@vp, 100 NFE, VE, start=tweedie, s1=0.9, ζ=1"}


def rows_of(folder: Path, task: str) -> dict:
    rows = {}
    for suffix, label in RUNS.items():
        path = folder / f"{task}{suffix}.json"
        if not path.exists():
            continue
        for spec, row in json.loads(path.read_text())["results"].items():
            name = label or (f"{spec}, 100 NFE, defaults")
            rows[name] = row
    return rows


def table(task: str, rows: dict) -> str:
    lines = [f"**{task}**", "", "| method | PSNR | SSIM | perceptual | NFE | VJPs | s/image | "
             "PSNR − DPS (paired 95 % CI) | verdict |", "|---" * 9 + "|"]
    dps = rows.get("dps@vp, 100 NFE, defaults")
    for name, row in rows.items():
        cells = [with_interval(row[k], row.get(f"{k}_ci")) for k in ("psnr", "ssim", "perceptual")]
        cells += [f"{row['nfe']:.0f}", f"{row.get('vjp', row['nfe']):.0f}", f"{row['seconds']:.2f}"]
        if dps is not None and name.startswith("rmp"):
            gain = uncertainty.paired_difference_interval(row["per_image"]["psnr"], dps["per_image"]["psnr"])
            cells += [f"{row['psnr'] - dps['psnr']:+.2f} {format_interval(gain)}", uncertainty.verdict(gain)]
        else:
            cells += ["", ""]
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(folder: Path) -> None:
    for task in TASKS:
        rows = rows_of(folder, task)
        if rows:
            print(table(task, rows) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
