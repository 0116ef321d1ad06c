"""The evaluation suite's JSON schema and behaviour, on exact priors and baselines."""

import json

import pytest
import torch

from engine.evaluation import evaluate
from engine.models.features import FeatureNet

ROW_KEYS = {"psnr", "ssim", "perceptual", "nfe", "seconds", "n_images"}


@pytest.fixture(autouse=True)
def untrained_feature_network(monkeypatch):
    """A fixed random feature network: the schema does not depend on training."""
    def network():
        net = FeatureNet()
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in net.parameters():
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
        return net.eval()
    monkeypatch.setattr(evaluate, "feature_network", network)


def test_restoration_task_schema_and_keys_as_given():
    specs = ["pinv", "tikhonov", "ddim@empirical-vp", "momentum"]
    report, pictures = evaluate.evaluate("denoise", specs, n_images=2, samples=2, nfe=4)
    assert report["task"] == "denoise" and list(report["results"]) == specs
    assert report["config"]["degradation"] == "noise=0.1"
    for spec in ["pinv", "tikhonov", "ddim@empirical-vp"]:
        row = report["results"][spec]
        assert ROW_KEYS | {"diversity", "fwv"} <= set(row)
        assert "fd" not in row  # two images: a Fréchet distance would be noise, so omitted
        assert row["n_images"] == 2 and row["seconds"] > 0
    assert report["results"]["pinv"]["diversity"] == 0.0
    assert report["results"]["pinv"]["fwv"] == pytest.approx(0.0, abs=1e-9)
    assert report["results"]["ddim@empirical-vp"]["nfe"] == 4
    row = report["results"]["ddim@empirical-vp"]  # intervals over the two images
    assert row["psnr_ci"][0] <= row["psnr"] <= row["psnr_ci"][1]
    assert len(row["per_image"]["psnr"]) == 2 and "nfe_ci" not in row
    # best of an image's two samples: at least their mean, and pinv's identical samples tie
    assert all(b >= p for b, p in zip(row["per_image"]["best_of_n_psnr"], row["per_image"]["psnr"]))
    assert report["results"]["pinv"]["best_of_n_psnr"] == pytest.approx(report["results"]["pinv"]["psnr"])
    # momentum's default model is a learned soft-blur prior; on noise-only data from the
    # bundled demo set it either runs or reports why not — never crashes the run.
    assert set(report["results"]["momentum"]) >= ROW_KEYS or "error" in report["results"]["momentum"]
    json.dumps(report)  # plain JSON
    assert pictures["pinv"].shape == (2, 1, 28, 28)


@pytest.mark.parametrize("spec,params", [("dps@empirical-vp", {}), ("rmp@empirical-vp", {"steps": 4, "zeta": 0.15})])
def test_batched_evaluation_equals_one_image_runs(spec, params):
    """``batch`` images per run keep each image's measurement and seeds: the same
    samples as one job per image (the random mask's operator included), VJPs counted."""
    one, batched = (evaluate.evaluate("inpaint-random", [spec], n_images=3, samples=2, nfe=3,
                                      params=params, batch=b)[0]["results"][spec] for b in (1, 3))
    assert batched["per_image"]["psnr"] == pytest.approx(one["per_image"]["psnr"], abs=1e-3)
    assert batched["per_image"]["diversity"] == pytest.approx(one["per_image"]["diversity"], rel=1e-3)
    assert batched["nfe"] == one["nfe"] == batched["vjp"] == one["vjp"] > 0


def test_a_method_that_cannot_serve_a_task_gets_an_error_entry():
    report, _ = evaluate.evaluate("sr2", ["ddim@empirical-vp", "pinv"], n_images=1, samples=1)
    assert "cannot restore" in report["results"]["ddim@empirical-vp"]["error"]
    assert report["results"]["pinv"]["psnr"] > 15  # 19.59 ± 0.003 dB over 10 noise seeds


def test_first_starts_at_a_later_image_with_that_image_s_seeds():
    """Held-out tuning images (``--first``) are scored exactly as in a run from image 0."""
    whole, _ = evaluate.evaluate("sr2", ["pnp-drs@empirical-vp"], n_images=3, samples=1)
    later, _ = evaluate.evaluate("sr2", ["pnp-drs@empirical-vp"], n_images=1, samples=1, first=2)
    assert later["config"]["first"] == 2
    psnr = lambda report: report["results"]["pnp-drs@empirical-vp"]["per_image"]["psnr"]
    assert psnr(later) == [psnr(whole)[2]] and psnr(whole)[2] != psnr(whole)[1]


def test_generate_task_reports_diversity_and_no_psnr():
    report, pictures = evaluate.evaluate("generate", ["ddim@empirical-vp"], n_images=6, nfe=5)
    row = report["results"]["ddim@empirical-vp"]
    assert set(row) == {"nfe", "seconds", "n_images", "diversity", "diversity_blocks"}
    assert row["nfe"] == 5 and row["diversity"] > 0 and pictures["ddim@empirical-vp"].shape[0] == 6


def test_cli_lists_the_required_tasks(capsys):
    assert evaluate.main(["--list-tasks"]) == 0
    out = capsys.readouterr().out
    for task in ["generate", "denoise", "sr2", "sr4", "deblur", "inpaint-box", "inpaint-random"]:
        assert task in out


def test_cli_writes_json_and_grid(tmp_path):
    out, grid = tmp_path / "e.json", tmp_path / "e.png"
    assert evaluate.main(["--task", "inpaint-box", "--methods", "pinv,tikhonov", "--n-images",
                          "2", "--samples", "1", "--json", str(out), "--grid", str(grid)]) == 0
    report = json.loads(out.read_text())
    assert set(report) == {"task", "config", "results"} and grid.exists()
    assert evaluate.main(["--task", "nosuch", "--methods", "pinv", "--json", str(out)]) == 2
