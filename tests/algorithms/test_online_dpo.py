"""Online DPO / IPO: the population fixed points (IPO → π*_β with the same β, DPO → μ·exp(r/β) on
Bradley–Terry games) from exact expectations, and online IPO's sample-mode progress."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.special import rel_entr, softmax

import prefzoo
from prefzoo.algorithms.online_dpo import OnlineDPO, OnlineIPO, preference_loss

CYCLIC = "prefzoo/PrefBandit-Cyclic-v0"


def population_grad(game, pi, beta, loss):
    """Gradient wrt tabular logits of the population loss E_{y,y'~π (stop-grad)} E_b[loss] at π."""
    X, Y = pi.shape
    theta = torch.tensor(np.log(pi), requires_grad=True)
    h = torch.log_softmax(theta, dim=1) - torch.tensor(np.log(game.ref))
    margin = h[:, :, None] - h[:, None, :]
    weight = torch.tensor(game.rho[:, None, None] * pi[:, :, None] * pi[:, None, :])
    preference_loss(margin, torch.tensor(game.P), beta, loss, weight).backward()
    return theta.grad.numpy()


@pytest.mark.parametrize("env_id", ["prefzoo/PrefBandit-v0", CYCLIC])
def test_ipo_population_fixed_point_is_regularized_nash(env_id):
    game, beta = gym.make(env_id).unwrapped.game, 0.1
    assert np.abs(population_grad(game, game.nash(beta), beta, "ipo")).max() < 1e-12
    for other in (game.nash(2 * beta), game.nash(beta / 2), game.ref):  # no other β' fits
        assert np.abs(population_grad(game, other, beta, "ipo")).max() > 1e-4
    # and the mean-field gradient flow from π_ref goes there
    theta = np.log(game.ref)
    for _ in range(15000):
        theta = theta - 0.2 * population_grad(game, softmax(theta, axis=1), beta, "ipo") / game.rho[:, None]
    assert game.expectation(rel_entr(game.nash(beta), softmax(theta, axis=1)).sum(1)) < 1e-8


def test_dpo_population_fixed_point_on_bradley_terry_is_rlhf_optimum():
    game, beta = gym.make("prefzoo/PrefBandit-v0").unwrapped.game, 0.5
    rlhf = softmax(np.log(game.ref) + game.rewards / beta, axis=1)
    assert np.abs(population_grad(game, rlhf, beta, "sigmoid")).max() < 1e-12
    cyclic = gym.make(CYCLIC).unwrapped.game  # intransitive: neither candidate is stationary
    for candidate in (cyclic.nash(beta), softmax(np.log(cyclic.ref) + cyclic.rewards / beta, axis=1)):
        assert np.abs(population_grad(cyclic, candidate, beta, "sigmoid")).max() > 1e-4


def test_targets():
    assert OnlineDPO(CYCLIC).target_policy() is None
    ipo = OnlineIPO(CYCLIC, beta=0.2)
    np.testing.assert_array_equal(ipo.target_policy(), ipo.game.nash(0.2))
    with pytest.raises(ValueError, match="sample"):
        OnlineIPO(CYCLIC, mode="exact")
    with pytest.raises(ValueError, match="beta"):
        OnlineDPO(CYCLIC, beta=0)


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_ipo_cuts_kl_to_target_5x(seed):
    algo = prefzoo.make_algo("online_ipo", gym.make(CYCLIC), seed=seed, beta=0.1, lr=0.02, batch_size=64,
                             grad_steps=1)
    start = algo.evaluate()["game/kl_to_target"]
    while algo.queries < 60_000:
        algo.learn(50)
    end = algo.evaluate()["game/kl_to_target"]
    assert end <= start / 5, (start, end)
    assert algo.queries == algo.iteration * 64  # one comparison per prompt


@pytest.mark.parametrize("name", ["online_dpo", "online_ipo"])
def test_save_load_continues_identically(name, tmp_path):
    def build():
        return prefzoo.make_algo(name, gym.make(CYCLIC), seed=2, batch_size=16, grad_steps=3)

    straight = build().learn(6)
    build().learn(3).save(tmp_path / "ckpt.pt")
    resumed = build().load(tmp_path / "ckpt.pt").learn(3)
    np.testing.assert_array_equal(resumed.policy_probs(), straight.policy_probs())
    np.testing.assert_array_equal(build().learn(6).policy_probs(), straight.policy_probs())
