"""The GUI benchmark runs on the real window and reports what it promises."""

from studio.bench import format_report, run


def test_quick_gui_benchmark_measures_preview_first_step_live_and_stall(qtbot):
    report = run(quick=True, method="ddim@empirical-vp", nfe=50, n=2)
    assert set(report["preview"]) == {"noise", "blur", "mask_level"}
    for row in report["preview"].values():
        assert row["samples"] == 10 and 0 < row["median_ms"] <= row["p95_ms"]
        assert 0 < row["cpu_median_ms"] <= row["cpu_p95_ms"] and row["page_faults_per_move"] >= 0
    stall = report["stall"]
    assert stall["nfe"] == 50 and stall["frames_drawn"] >= 1 and stall["ticks"] >= 2
    assert 0 <= stall["median_stall_ms"] <= stall["longest_stall_ms"]
    first = report["first_step"]
    assert first["runs"] == 3 and 0 < first["min_ms"] <= first["median_ms"] and first["cold_ms"] > 0
    for name, live in report["live"].items():
        assert live["n"] == 8 and live["updates"] >= 1 and live["updates_per_s"] > 0
        assert live["last_result_spec"] == live["final_spec"]  # the drag ends on its own result
    assert set(report["live"]) == {"pinv", "tikhonov"}
    assert "longest" in format_report(report) and "updates/s" in format_report(report)
