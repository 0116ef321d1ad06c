"""W2 shortest-path blur schedules (soft_diffusion.md, §3.3 and "Tests")."""

import json

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import csgraph_from_dense, dijkstra

from engine.core import wasserstein as w2
from engine.core.schedules import SoftBlurSchedule, schedule_from_config
from engine.core.step import BadInputError

SIGMA_MAX = 6.0


def synthetic_images(n: int, size: int, seed: int) -> torch.Tensor:
    """Random bright rectangles on a dark background plus a little texture, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    images = 0.1 * torch.rand(n, 1, size, size, generator=g)
    for k in range(n):
        for _ in range(3):
            top, left = torch.randint(0, size - 3, (2,), generator=g).tolist()
            h, w = torch.randint(2, size // 2, (2,), generator=g).tolist()
            images[k, 0, top:top + h, left:left + w] += 0.3 + 0.6 * torch.rand(1, generator=g)
    return images.clamp(0, 1)


@pytest.fixture(scope="module")
def images():
    return synthetic_images(12, 12, seed=0)


@pytest.fixture(scope="module")
def levels():
    return w2.blur_levels(16, 0.01, SIGMA_MAX)


@pytest.fixture(scope="module")
def m(images, levels):
    return w2.w2_matrix(images, levels)


def node_counts(m):
    """Path node count for every ε at which it can change, in increasing ε."""
    eps = w2.eps_candidates(m)
    return eps, np.array([w2.node_count(m, e) for e in eps])


def total_w2(m, path):
    return sum(m[i, j] for i, j in zip(path, path[1:]))


def test_blur_levels_are_geometric_from_the_clean_level(levels):
    assert levels[0] == pytest.approx(0.01) and levels[-1] == pytest.approx(SIGMA_MAX)
    ratios = levels[1:] / levels[:-1]
    np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)
    with pytest.raises(BadInputError):
        w2.blur_levels(1)


def test_w2_matrix_is_a_metric(m):
    assert m.shape == (16, 16)
    np.testing.assert_array_equal(np.diag(m), 0.0)
    np.testing.assert_array_equal(m, m.T)
    assert (m[np.triu_indices(16, 1)][-20:] > 0).all()  # strongly blurred levels differ
    # triangle inequality M_ik ≤ M_ij + M_jk over all triples
    slack = m[:, None, :] - (m[:, :, None] + m[None, :, :])
    assert slack.max() < 1e-9


def test_w2_is_at_most_the_identity_coupling(images, levels, m):
    bound = w2.identity_coupling_bound(images, levels)
    np.testing.assert_allclose(np.diag(bound), 0.0, atol=1e-7)
    assert (m <= bound + 1e-9).all()
    # the bound really is the mean squared distance of each image to its own blur
    x = images.double()
    direct = ((w2.Blur(float(levels[3])).forward(x) - w2.Blur(float(levels[12])).forward(x)) ** 2)
    assert bound[3, 12] == pytest.approx(direct.sum((1, 2, 3)).mean().sqrt().item(), rel=1e-10)


def test_exact_w2_agrees_between_assignment_and_pot(images, levels, m):
    ot = pytest.importorskip("ot")
    sets = w2.blurred_sets(images, levels)
    uniform = np.full(len(images), 1 / len(images))
    for i, j in [(0, 15), (4, 9), (10, 11)]:
        cost = w2.squared_distances(sets[i], sets[j]).numpy()
        emd = np.sqrt(ot.emd2(uniform, uniform, cost))
        assert w2.exact_w2(cost) == pytest.approx(emd, rel=1e-9, abs=1e-12)
        assert m[i, j] == pytest.approx(emd, rel=1e-9, abs=1e-12)


def test_infinite_eps_gives_the_two_node_path(m):
    assert w2.shortest_path(m, np.inf) == [0, 15]


def test_node_count_falls_with_eps_and_rises_only_for_a_shorter_path(m):
    eps, counts = node_counts(m)
    assert np.isinf(counts[0])  # below the bottleneck the last level is unreachable
    assert w2.shortest_path(m, eps[0]) is None
    reachable = eps[np.isfinite(counts)]
    counts = counts[np.isfinite(counts)]
    assert counts[0] >= 6 and counts[-1] == 2
    lengths = np.array([total_w2(m, w2.shortest_path(m, e)) for e in reachable])
    assert (np.diff(lengths) <= 1e-12).all()  # more edges never lengthen the path
    # The count is not monotone in ε (the spec's test assumed it was): a newly allowed
    # long edge can complete a strictly shorter path with more nodes. Ties go to fewer
    # nodes, so every rise must buy a real decrease in W2 length.
    rises = np.flatnonzero(np.diff(counts) > 0)
    assert (lengths[rises + 1] < lengths[rises] - 1e-6).all()
    assert len(rises) < len(counts) // 4


def test_shortest_path_matches_scipy_dijkstra():
    rng = np.random.default_rng(1)
    points = np.cumsum(rng.uniform(0.1, 1.0, (20, 3)), axis=0)  # a metric on 20 nodes
    m = np.linalg.norm(points[:, None] - points[None], axis=-1) ** 1.3
    for eps in (2.0, 4.0, 9.0):
        forward = np.where((m <= eps) & np.triu(np.ones_like(m, bool), 1), m, np.inf)
        dist, previous = dijkstra(csgraph_from_dense(forward, null_value=np.inf), indices=0,
                                  return_predecessors=True)
        expected = [19]
        while expected[-1] != 0:
            expected.append(int(previous[expected[-1]]))
        path = w2.shortest_path(m, eps)
        assert path == expected[::-1]
        assert total_w2(m, path) == pytest.approx(dist[19])


def test_shortest_path_keeps_zero_weight_edges():
    m = np.array([[0.0, 0.0, 5.0], [0.0, 0.0, 0.0], [5.0, 0.0, 0.0]])
    assert w2.shortest_path(m, 0.0) == [0, 1, 2]
    assert w2.shortest_path(np.array([[0.0, 2.0], [2.0, 0.0]]), 1.0) is None


@pytest.mark.parametrize("k", [2, 3, 5, 6])
def test_selected_schedule_has_k_increasing_levels(m, levels, k):
    table, eps = w2.select_schedule(m, levels, k)
    assert len(table) == k
    assert table[0] == levels[0] and table[-1] == levels[-1]
    assert (np.diff(table) > 0).all()
    path = w2.shortest_path(m, eps)
    np.testing.assert_array_equal(table, levels[path])
    assert max(m[i, j] for i, j in zip(path, path[1:])) <= eps


def test_unreachable_k_gives_the_closest_path(m, levels):
    _, counts = node_counts(m)
    longest = int(counts[np.isfinite(counts)].max())
    table, _ = w2.select_schedule(m, levels, 40)
    assert len(table) == longest
    with pytest.raises(BadInputError):
        w2.select_schedule(m, levels, 1)


def test_impossible_k_between_two_counts_prefers_the_longer_path():
    m = np.array([[0.0, 1.0, 2.5, 2.9],
                  [1.0, 0.0, 1.0, 2.5],
                  [2.5, 1.0, 0.0, 1.0],
                  [2.9, 2.5, 1.0, 0.0]])
    assert [w2.node_count(m, e) for e in w2.eps_candidates(m)] == [4, 4, 2]  # never 3
    table, eps = w2.select_schedule(m, [1.0, 2.0, 3.0, 4.0], 3)
    assert table.tolist() == [1.0, 2.0, 3.0, 4.0] and eps == 2.5


def test_mse_matching_baseline_grows_like_ve_noise(images):
    levels = w2.blur_levels(32, 0.01, SIGMA_MAX)
    table = w2.mse_matching_schedule(images, levels, 8, sigma=0.1)
    assert len(table) == 8 and (np.diff(table) > 0).all()
    assert table[0] == pytest.approx(0.01) and table[-1] == pytest.approx(SIGMA_MAX)
    x = images.double()
    error = np.array([((w2.Blur(float(s)).forward(x) - x) ** 2).sum((1, 2, 3)).mean().item()
                      for s in table]) + x[0].numel() * 0.1**2
    ratios = error[1:] / error[:-1]
    assert ratios.min() > 1.3  # the error really grows ...
    # ... by one factor per step (up to the log-log interpolation on 32 candidates)
    np.testing.assert_allclose(ratios, (error[-1] / error[0]) ** (1 / 7), rtol=0.02)


def test_compute_schedule_builds_a_soft_blur_table(images):
    done = []
    result = w2.compute_schedule("blur", levels=16, path=5, n_images=10, data=images,
                                 sigma_max=SIGMA_MAX, progress=done.append)
    assert sum(done) == 16 * 15 // 2 and len(done) == 15  # one call per row of pairs
    assert result["method"] == "w2-shortest-path" and result["n_images"] == 10
    table = result["blur_table"]
    assert len(table) == 5 and len(result["w2"]) == 4 and len(result["levels"]) == 16
    assert max(result["w2"]) <= result["eps"]
    schedule = SoftBlurSchedule(blur_max=SIGMA_MAX, blur_table=table)
    assert schedule.blur_sigma(1.0) == pytest.approx(SIGMA_MAX)
    assert schedule.blur_sigma(schedule.t_split) == pytest.approx(0.01)
    assert schedule_from_config(json.loads(json.dumps(schedule.to_config()))) == schedule
    # the same seed picks the same subset and table; the table is JSON-ready
    again = w2.compute_schedule("blur", levels=16, path=5, n_images=10, data=images,
                                sigma_max=SIGMA_MAX)
    assert json.dumps(again) == json.dumps(result)


def test_compute_schedule_rejects_what_it_cannot_do(images):
    with pytest.raises(BadInputError, match="blur only"):
        w2.compute_schedule("mask", data=images)
    with pytest.raises(BadInputError, match="at least 2 images"):
        w2.compute_schedule(levels=8, path=3, n_images=1, data=images)


def test_cli_prints_the_table_and_writes_json(images, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(w2, "training_images", lambda n, seed: w2.subset(images, n, seed))
    out = tmp_path / "schedule.json"
    code = w2.main(["--corruption", "blur", "--levels", "12", "--path", "4", "--images", "8",
                    "--sigma-max", "5", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert len(result["blur_table"]) == 4 and result["n_images"] == 8
    assert f"{result['blur_table'][2]:9.4f}" in printed and "eps =" in printed
    assert w2.main(["--path", "1"]) == 2
    assert "at least 2 nodes" in capsys.readouterr().err
