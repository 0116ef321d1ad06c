"""Training loops: U-Net shape, losses, checkpoint/resume determinism, CLI errors."""

import json

import pytest
import torch

from engine.io.data import demo_images, to_model_range
from engine.models.unet import UNet, UNetConfig, parameter_count
from engine.priors.learned import load_learned
from engine.core.schedules import SoftBlurSchedule, VPSchedule
from engine.core.step import BadInputError
from engine.train import main
from engine.train.diffusion import corrupt_each, diffusion_loss, train_diffusion
from engine.train.loop import EMA, TrainSettings, init_network, load_train_state

TINY = UNetConfig(channels=8, multipliers=(1, 2), blocks=1, attention=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: extra threads only add synchronisation on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_default_unet_shape_and_size():
    net = UNet()
    assert 0.5e6 <= parameter_count(net) <= 1.5e6
    with torch.no_grad():
        out = net(torch.randn(3, 1, 28, 28), torch.tensor([0.0, 0.5, 1.0]))
    assert out.shape == (3, 1, 28, 28)
    assert float(out.abs().max()) == 0.0  # the output layer starts at zero


def test_unet_config_round_trips_through_json():
    config = UNetConfig(channels=8, multipliers=(1, 2, 3), blocks=2, attention=True)
    assert UNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_unet_depends_on_t():
    net = init_network(lambda: UNet(TINY), seed=0)
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert not torch.allclose(net(x, torch.tensor(0.2)), net(x, torch.tensor(0.8)))


def test_init_network_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = (init_network(lambda: UNet(TINY), seed=3) for _ in range(2))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_per_sample_corruption_matches_the_schedule():
    schedule = SoftBlurSchedule()
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.1, 0.5, 1.0])
    out = corrupt_each(schedule, t, x)
    for i in range(3):
        assert torch.allclose(out[i], schedule.corruption(float(t[i])).forward(x[i:i + 1])[0])


@pytest.mark.parametrize("family,loss", [("vp", "ssm"), ("soft-blur", "ssm"), ("soft-blur", "clean"), ("soft-blur", "ssm+clean")])
def test_loss_of_a_zero_network(family, loss):
    """A fresh net outputs 0: VP's ε-loss is E ε² ≈ 1; the SSM loss is larger than 0."""
    schedule, param = (VPSchedule(), "eps") if family == "vp" else (SoftBlurSchedule(), "x0-residual")
    x0 = to_model_range(demo_images()[0])
    value = diffusion_loss(UNet(TINY), schedule, param, loss, x0, torch.Generator().manual_seed(0))
    assert torch.isfinite(value)
    if family == "vp":
        assert value.item() == pytest.approx(1.0, abs=0.05)
    else:
        assert value.item() > 0.1


def test_ssm_plus_clean_is_the_sum_of_its_two_terms():
    schedule, x0 = SoftBlurSchedule(), to_model_range(demo_images()[0][:8])
    torch.manual_seed(3)
    net = UNet(TINY)
    value = {loss: diffusion_loss(net, schedule, "x0-residual", loss, x0, torch.Generator().manual_seed(4)).item()
             for loss in ("ssm", "clean", "ssm+clean")}
    assert value["ssm+clean"] == pytest.approx(value["ssm"] + value["clean"], rel=1e-5)


def run(out, steps, resume=False, family="soft-blur"):
    settings = TrainSettings(steps=steps, batch=8, lr=1e-3, warmup=2, checkpoint_every=2, seed=5)
    return train_diffusion(family, out, settings, architecture=TINY, data=demo_images()[0],
                           resume=resume, progress=False, grids=False)


def test_resume_takes_the_same_steps_as_an_uninterrupted_run(tmp_path):
    run(tmp_path / "straight", 3)
    run(tmp_path / "split", 2)
    run(tmp_path / "split", 3, resume=True)
    states = []
    for name in ("straight", "split"):
        net = UNet(TINY)
        ema = EMA(UNet(TINY), 0.999)
        optimizer = torch.optim.Adam(net.parameters())
        generator = torch.Generator()
        step, _ = load_train_state(tmp_path / name, net, ema, optimizer, generator)
        assert step == 3
        states.append((net.state_dict(), ema.model.state_dict(), generator.get_state()))
    (net_a, ema_a, gen_a), (net_b, ema_b, gen_b) = states
    assert torch.equal(gen_a, gen_b)
    for key in net_a:
        assert torch.equal(net_a[key], net_b[key]), key
        assert torch.equal(ema_a[key], ema_b[key]), key
    # the training really moved the weights away from the seeded initialisation
    fresh = init_network(lambda: UNet(TINY), seed=5).state_dict()
    assert not torch.equal(fresh["conv_out.weight"], net_a["conv_out.weight"])


def test_a_run_directory_is_a_loadable_prior(tmp_path):
    info = run(tmp_path / "vp", 2, family="vp")
    assert info["steps"] == 2 and info["loss"] == info["loss"]  # finite, not NaN
    prior = load_learned(tmp_path / "vp")
    config = json.loads((tmp_path / "vp" / "config.json").read_text())
    assert config["parametrisation"] == "eps" and config["data_range"] == [-1.0, 1.0]
    assert config["schedule"] == VPSchedule().to_config()
    assert config["training"]["steps"] == 2
    x = torch.randn(2, 1, 28, 28)
    assert prior.denoise(x, 0.5).shape == (2, 1, 28, 28) and prior.nfe == 1
    expected_mean = to_model_range(demo_images()[0]).mean(0)
    assert torch.allclose(prior.mean_image(), expected_mean, atol=1e-6)


def test_cli_reports_bad_combinations(tmp_path, capsys):
    assert main(["vp", "--loss", "clean", "--steps", "1", "--out", str(tmp_path / "x")]) == 2
    assert "clean" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["gan"])


def test_blur_table_option(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"blur_table": [0.01, 2.0, 1.0]}))
    assert main(["soft-blur", "--blur-table", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "increasing" in capsys.readouterr().out
    settings = TrainSettings(steps=1, batch=4)
    with pytest.raises(BadInputError, match="soft-blur"):
        train_diffusion("vp", tmp_path / "y", settings, blur_table=[0.01, 1.0], data=demo_images()[0])
    table = [0.01, 0.4, 2.0, 15.0]
    run_dir = tmp_path / "sb"
    train_diffusion("soft-blur", run_dir, TrainSettings(steps=1, batch=4, checkpoint_every=1),
                    architecture=TINY, data=demo_images()[0], blur_table=table, progress=False, grids=False)
    assert load_learned(run_dir).schedule.blur_table == table
