"""The GUI benchmark runs on the real window and reports what it promises."""

from studio.bench import format_report, run


def test_quick_gui_benchmark_measures_preview_and_stall(qtbot):
    report = run(quick=True, method="ddim@empirical-vp", nfe=50, n=2)
    assert set(report["preview"]) == {"noise", "blur", "mask_level"}
    for row in report["preview"].values():
        assert row["samples"] == 10 and 0 < row["median_ms"] <= row["p95_ms"]
    stall = report["stall"]
    assert stall["nfe"] == 50 and stall["frames_drawn"] >= 1 and stall["ticks"] >= 2
    assert 0 <= stall["median_stall_ms"] <= stall["longest_stall_ms"]
    assert "longest" in format_report(report)
