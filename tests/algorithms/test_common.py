"""Behaviour every registered algorithm shares (SB3's test_deterministic / test_save_load style)."""

import gymnasium as gym
import numpy as np
import pytest

import prefzoo
from prefzoo.algorithms import ALGORITHMS
from prefzoo.algorithms.base import plays

TIME_KEYS = ("time/wall_s",)


def bandit_env():
    return gym.make("prefzoo/PrefBandit-Cyclic-v0", n_contexts=4, n_actions=4, seed=0)


# these tests run on a PrefBandit; answer-level algorithms (aqp_alft) have their own tests
BANDIT_ALGOS = sorted(name for name, cls in ALGORITHMS.items() if plays(cls, bandit_env().unwrapped.game))


def build(name, seed=0):
    env = bandit_env()
    mode = "sample" if "sample" in ALGORITHMS[name].supported_modes else "exact"
    return prefzoo.make_algo(name, env, seed=seed, mode=mode)


def metrics_without_time(algo):
    return {k: v for k, v in algo.evaluate().items() if k not in TIME_KEYS}


@pytest.mark.parametrize("name", BANDIT_ALGOS)
def test_same_seed_same_numbers(name):
    a, b = build(name).learn(2), build(name).learn(2)
    np.testing.assert_array_equal(a.policy_probs(), b.policy_probs())
    assert metrics_without_time(a) == metrics_without_time(b)


@pytest.mark.parametrize("name", BANDIT_ALGOS)
def test_policy_and_metrics(name):
    algo = build(name).learn(1)
    pi = algo.policy_probs()
    assert pi.shape == (4, 4) and np.allclose(pi.sum(1), 1) and pi.min() >= 0
    metrics = algo.evaluate()
    for key in ("game/exploitability", "game/kl_to_ref", "game/win_rate_vs_ref", "game/win_rate_vs_nash",
                "cost/queries", "cost/samples", "time/wall_s"):
        assert np.isfinite(metrics[key]), key
    if algo.mode == "sample":
        assert metrics["cost/queries"] > 0


@pytest.mark.parametrize("name", BANDIT_ALGOS)
def test_save_load_round_trip(name, tmp_path):
    reference = build(name, seed=1).learn(2)
    saved = build(name, seed=1).learn(1)
    saved.save(tmp_path / "algo.pt")
    resumed = build(name, seed=1).load(tmp_path / "algo.pt").learn(1)
    np.testing.assert_allclose(resumed.policy_probs(), reference.policy_probs(), rtol=0, atol=1e-12)
    assert metrics_without_time(resumed) == pytest.approx(metrics_without_time(reference), abs=1e-12)


@pytest.mark.parametrize("name", BANDIT_ALGOS)
def test_unknown_hyperparameter_is_rejected(name):
    with pytest.raises(TypeError):
        prefzoo.make_algo(name, "prefzoo/PrefBandit-v0", not_a_hyperparameter=1)
