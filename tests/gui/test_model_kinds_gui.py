"""A throw-away model kind and method (tests/conftest.py `toy_kind`) in the real window:
the pickers offer the model only to the method that can run it, and a job runs."""

import torch

TOY_TASK = "downsample=2,noise=0.02"  # the task of the toy model (tests/conftest.py)


def test_the_window_offers_and_runs_a_new_model_kind(toy_kind, window, run_to_end):
    assert window.catalog.image_models_for("toy-task-sample") == ["toy-up"]
    assert "toy-up" not in window.catalog.image_models_for("ddim")
    assert window.catalog.task_of("toy-up") == TOY_TASK
    assert "mystery" in window.catalog.problems
    window.choose_method("toy-task-sample", "toy-up", {})
    window.state.degradation.set_spec(TOY_TASK)
    window.state.method.n = 3
    panel = window.method_panel
    assert [panel.model.itemData(i) for i in range(panel.model.count())] == ["toy-up"]
    outcome = run_to_end()
    result = outcome.result
    assert result.samples.shape == (3, 1, 28, 28)
    assert result.metrics["nfe"] == 1 and result.recipe["model"] == "toy-up"
    assert result.recipe["degradation"] == TOY_TASK
    assert window.trajectory.frames["forward"] == []  # no schedule, no forward trajectory
    assert len(window.trajectory.frames["reverse"]) == 2
    assert result.extras["level"] == [(0, 1.0), (1, 0.0)]
    assert float(result.samples.std(0).mean()) > 0  # z differs per sample
    assert torch.isfinite(result.samples).all()


def test_the_demo_starts_a_task_bound_model_on_its_own_task(toy_kind, window, qtbot):
    """``studio --run-demo --method M@MODEL`` with a task-bound model (an APS flow, a TIM
    tower) starts on the model's task, not on the method's example degradation."""
    import dataclasses
    from types import SimpleNamespace

    from studio.app import Demo

    catalog = window.catalog
    catalog.methods["toy-task-sample"] = dataclasses.replace(
        catalog.methods["toy-task-sample"], example_degradation="noise=0.1")
    args = SimpleNamespace(method="toy-task-sample@toy-up", param=[], degrade=None, n=2, seed=0,
                           sample=0, image=None, screenshot=None)
    demo = Demo(window, args, SimpleNamespace(processEvents=lambda: None, quit=lambda: None))
    with qtbot.waitSignal(window.controller.finished, timeout=60_000):
        demo.start()
    assert window.state.degradation.spec() == TOY_TASK
    assert demo.exit_code == 0
