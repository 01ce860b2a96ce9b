"""Nash-MD / Nash-MP: fixed points against the solver's π*_β, the parametrization against WIND,
the sample losses' population minimizers against the closed-form steps, and sample-mode progress."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.special import log_softmax, rel_entr

import prefzoo
from prefzoo.algorithms.nash_md import NashMD, NashMP, md_tau, mixture_log_probs, nash_md_step, prox_score, prox_step
from prefzoo.algorithms.wind import regression_loss, wind_score, wind_step

CYCLIC = "prefzoo/PrefBandit-Cyclic-v0"


def kl_to_nash(algo):
    game = algo.game
    return game.expectation(rel_entr(game.nash(algo.beta), algo.policy_probs()).sum(1))


@pytest.mark.parametrize("env_id", ["prefzoo/PrefBandit-v0", CYCLIC])
@pytest.mark.parametrize("name", ["nash_md", "nash_mp"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_exact_reaches_regularized_nash(env_id, name, beta):
    algo = prefzoo.make_algo(name, gym.make(env_id), mode="exact", beta=beta, eta=1.0).learn(2000)
    assert kl_to_nash(algo) <= 1e-8
    assert algo.evaluate()["game/reg_exploitability"] <= 1e-8


def test_md_mixture_is_wind_with_shrunk_step():
    """The mixture sequence of Nash-MD(η, τ = β/(1+ηβ)) is WIND(η/(1+ηβ), β), iterate by iterate."""
    game = gym.make(CYCLIC).unwrapped.game
    beta, eta = 0.2, 1.5
    tau, log_ref = md_tau(eta, beta), np.log(game.ref)
    log_pi = log_softmax(np.random.default_rng(0).normal(size=game.ref.shape), axis=1)
    log_mix = mixture_log_probs(log_pi, log_ref, eta, tau)
    for _ in range(5):
        log_pi = nash_md_step(log_pi, log_ref, game.P, eta, tau)
        log_mix = wind_step(log_mix, log_ref, game.win_rates(np.exp(log_mix)), eta / (1 + eta * beta), beta)
        np.testing.assert_allclose(mixture_log_probs(log_pi, log_ref, eta, tau), log_mix, atol=1e-12)


def test_papers_tau_equal_beta_is_biased():
    """With τ = β (the paper's parametrization) the mixture settles at π*_{β/(1−ηβ)}, not π*_β."""
    game = gym.make(CYCLIC).unwrapped.game
    beta, eta = 0.2, 1.0
    log_ref = np.log(game.ref)
    log_pi = log_ref.copy()
    for _ in range(3000):
        log_pi = nash_md_step(log_pi, log_ref, game.P, eta, beta)
    mix = np.exp(mixture_log_probs(log_pi, log_ref, eta, beta))
    np.testing.assert_allclose(mix, game.nash(beta / (1 - eta * beta)), atol=1e-8)
    assert np.abs(mix - game.nash(beta)).max() > 1e-3


def solve_population(game, log_anchor, target, score_fn, weights):
    """argmin over tabular logits θ and offsets c of Σ_x ρ Σ_y w (s − target)², by LBFGS (float64)."""
    X, Y = game.ref.shape
    log_ref = torch.tensor(np.log(game.ref))
    theta = torch.zeros(X, Y, dtype=torch.float64, requires_grad=True)
    offset = torch.zeros(X, 1, dtype=torch.float64, requires_grad=True)
    w = torch.tensor(game.rho[:, None] * weights)
    label = torch.tensor(target + 0.5)
    opt = torch.optim.LBFGS([theta, offset], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        log_new = torch.log_softmax(log_ref + theta, dim=1)
        loss = regression_loss(score_fn(log_new, torch.tensor(log_anchor), log_ref, offset), label, "sq", w)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return torch.log_softmax(log_ref + theta, dim=1).detach().numpy()


def test_md_sample_loss_population_minimizer_is_exact_step():
    game = gym.make(CYCLIC).unwrapped.game
    beta, eta = 0.1, 0.7
    tau, log_ref = md_tau(eta, beta), np.log(game.ref)
    log_pi = log_softmax(log_ref + np.random.default_rng(1).normal(size=game.ref.shape), axis=1)
    mix = np.exp(mixture_log_probs(log_pi, log_ref, eta, tau))
    target = game.win_rates(mix) - 0.5  # E[b | y] − ½ with y' ~ π^μ
    got = solve_population(game, log_pi, target,
                           lambda new, old, ref, c: wind_score(new, old, ref, c, eta, tau), np.exp(log_pi))
    np.testing.assert_allclose(np.exp(got), np.exp(nash_md_step(log_pi, log_ref, game.P, eta, tau)), atol=1e-6)


def test_mp_sample_loss_population_minimizer_is_prox_step():
    game = gym.make(CYCLIC).unwrapped.game
    beta, eta = 0.1, 0.7
    log_ref = np.log(game.ref)
    log_pi = log_softmax(log_ref + np.random.default_rng(2).normal(size=game.ref.shape), axis=1)
    opponent = np.exp(log_softmax(np.random.default_rng(3).normal(size=game.ref.shape), axis=1))
    win = game.win_rates(opponent)
    got = solve_population(game, log_pi, win - 0.5,
                           lambda new, old, ref, c: prox_score(new, old, ref, c, eta, beta), np.exp(log_pi))
    np.testing.assert_allclose(np.exp(got), np.exp(prox_step(log_pi, log_ref, win, eta, beta)), atol=1e-6)


def test_validation():
    with pytest.raises(ValueError, match="beta"):
        NashMD(CYCLIC, beta=0.0)
    with pytest.raises(ValueError, match="eta"):
        NashMP(CYCLIC, eta=-1.0)


def run_until(algo, budget):
    while algo.queries < budget:
        algo.learn(10)
    return algo


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_md_cuts_kl_to_target_5x(seed):
    algo = prefzoo.make_algo("nash_md", gym.make(CYCLIC), seed=seed, mode="sample", beta=0.1, eta=0.2,
                             batch_size=256, lr=0.05, grad_steps=20)
    start = algo.evaluate()["game/kl_to_target"]
    end = run_until(algo, 60_000).evaluate()["game/kl_to_target"]
    assert end <= start / 5, (start, end)


def test_sample_mp_makes_progress():
    algo = prefzoo.make_algo("nash_mp", gym.make(CYCLIC), seed=0, mode="sample", beta=0.1, eta=0.2,
                             batch_size=256, lr=0.05, grad_steps=20)
    start = algo.evaluate()["game/kl_to_target"]
    end = run_until(algo, 60_000).evaluate()["game/kl_to_target"]
    assert end <= start / 3, (start, end)


@pytest.mark.parametrize("name", ["nash_md", "nash_mp"])
def test_sample_save_load_continues_identically(name, tmp_path):
    def build():
        return prefzoo.make_algo(name, gym.make(CYCLIC), seed=4, mode="sample", batch_size=32, grad_steps=5)

    straight = build().learn(4)
    first = build().learn(2)
    first.save(tmp_path / "ckpt.pt")
    resumed = build().load(tmp_path / "ckpt.pt").learn(2)
    np.testing.assert_array_equal(resumed.policy_probs(), straight.policy_probs())
    assert resumed.queries == straight.queries == 4 * 32 * (1 if name == "nash_md" else 2)
    np.testing.assert_array_equal(build().learn(4).policy_probs(), straight.policy_probs())
