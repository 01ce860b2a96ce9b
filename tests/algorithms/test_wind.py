"""WIND: exact fixed point vs the equilibrium solver, step-size regimes, and the sample losses'
population minimizers vs the exact step (solved independently by L-BFGS)."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import prefzoo
from prefzoo.algorithms.wind import nce_loss, regression_loss, wind_score, wind_step


def cyclic_env(**kw):
    return gym.make("prefzoo/PrefBandit-Cyclic-v0", n_contexts=8, n_actions=6, seed=0, **kw)


@pytest.mark.parametrize("env_id", ["prefzoo/PrefBandit-v0", "prefzoo/PrefBandit-Cyclic-v0"])
def test_exact_wind_reaches_regularized_nash(env_id):
    env = gym.make(env_id, n_contexts=8, n_actions=6, seed=1)
    algo = prefzoo.make_algo("wind", env, mode="exact", beta=0.1, eta=1.0).learn(400, eval_freq=400)
    game = env.unwrapped.game
    kl = game.expectation(game.kl(game.nash(0.1), algo.policy_probs()))
    assert kl <= 1e-8
    assert algo.evaluate()["game/reg_exploitability"] <= 1e-8


def test_exact_wind_cycles_when_step_too_large():
    """η = 1/β is outside the measured stable range (η ≲ 20β on this game): no convergence."""
    env = cyclic_env()
    game = env.unwrapped.game
    algo = prefzoo.make_algo("wind", env, mode="exact", beta=0.1, eta=10.0)
    kls = []
    for _ in range(20):
        algo.learn(100, eval_freq=100)
        kls.append(game.expectation(game.kl(game.nash(0.1), algo.policy_probs())))
    assert min(kls[10:]) > 1e-2  # never settles
    assert np.std(kls[10:]) > 0 or kls[-1] > 1e-2


def _population_minimizer(loss: str, offset_free: bool = True):
    """Minimize the population version of a WIND loss over tabular logits and offsets."""
    game = cyclic_env().unwrapped.game
    beta, eta = 0.1, 1.0
    pi_t = game.nash(0.5)  # any interior policy
    win = game.win_rates(pi_t)  # E[b | x, y] = P(y ≻ π_t | x)
    exact = np.exp(wind_step(np.log(pi_t), np.log(game.ref), win, eta, beta))

    t = lambda a: torch.tensor(a, dtype=torch.float64)  # noqa: E731
    log_old, log_ref, label = t(np.log(pi_t)), t(np.log(game.ref)), t(win)
    rho_pi = t(game.rho[:, None] * pi_t)
    logits = torch.zeros_like(log_old, requires_grad=True)
    offset = torch.zeros(game.n_contexts, 1, dtype=torch.float64, requires_grad=offset_free)
    params = [logits, offset] if offset_free else [logits]
    opt = torch.optim.LBFGS(params, lr=1, max_iter=2000, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        score = wind_score(torch.log_softmax(logits, -1), log_old, log_ref, offset, eta, beta)
        if loss == "nce":  # winners ~ 2π_t P(y≻π_t), noise = both duel participants ~ 2π_t
            value = nce_loss(score, score, weight_winner=2 * rho_pi * label, weight_noise=2 * rho_pi)
        else:
            value = regression_loss(score, label, loss, weight=rho_pi)
        value.backward()
        return value

    for _ in range(5):
        opt.step(closure)
    return torch.softmax(logits, -1).detach().numpy(), exact


@pytest.mark.parametrize("loss", ["sq", "kl", "nce"])
def test_population_minimizer_is_exact_wind_step(loss):
    fitted, exact = _population_minimizer(loss)
    assert np.abs(fitted - exact).max() <= 1e-6


def test_zero_offset_is_biased():
    """c ≡ 0 (SPPO's log Z ≈ η/2) does not reproduce the exact step; the learned offset does."""
    fitted, exact = _population_minimizer("sq", offset_free=False)
    assert np.abs(fitted - exact).max() > 1e-5  # 10x the learned-offset fit's tolerance


@pytest.mark.parametrize("loss,policy,lr", [("sq", "tabular", 0.1), ("sq", "mlp", 0.01)])
def test_sample_wind_cuts_kl_to_target(loss, policy, lr):
    algo = prefzoo.make_algo("wind", "prefzoo/PrefBandit-Cyclic-v0", seed=0, mode="sample", beta=0.1,
                             eta=0.5, loss=loss, policy=policy, lr=lr, batch_size=512, grad_steps=20)
    start = algo.evaluate()["game/kl_to_target"]
    algo.learn(40)
    metrics = algo.evaluate()
    assert metrics["cost/queries"] == 40 * 512  # one comparison per prompt
    assert metrics["game/kl_to_target"] <= start / 5


def test_save_load_continues_identically(tmp_path):
    kw = dict(seed=3, mode="sample", beta=0.1, eta=0.5, batch_size=64, lr=0.1, grad_steps=5)
    reference = prefzoo.make_algo("wind", cyclic_env(), **kw).learn(6)
    saved = prefzoo.make_algo("wind", cyclic_env(), **kw).learn(3)
    saved.save(tmp_path / "ckpt.pt")
    resumed = prefzoo.make_algo("wind", cyclic_env(), **kw).load(tmp_path / "ckpt.pt").learn(3)
    np.testing.assert_array_equal(resumed.policy_probs(), reference.policy_probs())
    assert resumed.queries == reference.queries


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match="eta\\*beta"):
        prefzoo.make_algo("wind", cyclic_env(), beta=0.1, eta=20)
    with pytest.raises(ValueError, match="unknown loss"):
        prefzoo.make_algo("wind", cyclic_env(), loss="l2")
    with pytest.raises(ValueError, match="did you mean 'wind'"):
        prefzoo.make_algo("wnd", cyclic_env())
    with pytest.raises(TypeError):
        prefzoo.make_algo("wind", cyclic_env(), etaa=1.0)


def test_step_size_decay_removes_the_noise_floor():
    """Constant η leaves a noise floor of variance ≈ ησ²/(2β); η_t = min(η, 2/(β(t+1))) does not."""
    kl = {}
    for decay in (False, True):
        algo = prefzoo.make_algo("wind", "prefzoo/PrefBandit-Cyclic-v0", seed=0, mode="sample", beta=0.1,
                                 eta=0.5, eta_decay=decay, batch_size=256, lr=0.05, grad_steps=20)
        algo.learn(150, eval_freq=150)
        kl[decay] = algo.evaluate()["game/kl_to_target"]
    assert kl[True] < kl[False] / 2


def test_constructor_defaults_converge_in_sample_mode():
    algo = prefzoo.make_algo("wind", "prefzoo/PrefBandit-Cyclic-v0", seed=0, mode="sample")
    start = algo.evaluate()["game/kl_to_target"]
    algo.learn(100, eval_freq=100)
    assert algo.eta_decay and algo.evaluate()["game/kl_to_target"] <= start / 5


def test_the_largest_step_eta_beta_1_runs_in_exact_mode_even_when_pi_reaches_zero():
    """η = 1/β exactly (allowed): the step drops the log π_t term, so a π_t with exact zeros gives no
    0·(−∞) = NaN. The step is then π ∝ π_ref·exp(η P(y≻π_t)), checked against that formula."""
    algo = prefzoo.make_algo("wind", "prefzoo/PrefBandit-Cyclic-v0", mode="exact", beta=1e-8, eta=1e8)
    algo.learn(3)
    pi = algo.policy_probs()
    assert np.all(np.isfinite(pi)) and np.isfinite(algo.evaluate()["game/exploitability"])
    game = algo.game
    before = pi.copy()
    algo.learn(1)
    logits = 1e-8 * 1e8 * np.log(game.ref) + 1e8 * game.win_rates(before)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(algo.policy_probs(), expected / expected.sum(1, keepdims=True), atol=1e-12)
