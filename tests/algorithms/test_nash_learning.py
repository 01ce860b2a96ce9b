"""The Nash-learning algorithms of 2024–25 (MPO, INPO, EGPO, DNO, XPO, SPO): each exact update
against a plain numpy transcription of its paper's formula, each sample loss's population
minimizer (L-BFGS over tabular logits) against the exact update, and the papers' convergence
claims measured on PrefBandit-Cyclic with the constructors' defaults."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.special import expit, rel_entr

import prefzoo
from prefzoo.algorithms.dno import dno_loss
from prefzoo.algorithms.inpo import pair_loss
from prefzoo.algorithms.online_dpo import preference_loss
from prefzoo.algorithms.wind import omd_log_ratio

CYCLIC = "prefzoo/PrefBandit-Cyclic-v0"


def small_game(family="cyclic"):
    return gym.make(f"prefzoo/PrefBandit{'' if family == 'bt' else '-Cyclic'}-v0", n_contexts=3, n_actions=5,
                    seed=7).unwrapped.game


def random_policy(shape, seed):
    return np.random.default_rng(seed).dirichlet(np.ones(shape[1]), size=shape[0])


def win_rates_by_loop(P, pi):
    """P(y ≻ π | x), one context and one response at a time."""
    X, Y = pi.shape
    return np.array([[sum(P[x, y, j] * pi[x, j] for j in range(Y)) for y in range(Y)] for x in range(X)])


def normalized(w):
    return w / w.sum(axis=1, keepdims=True)


def exact_step(name, pi, **hyperparams):
    """One exact step of ``name`` from ``pi`` on the small cyclic game (MPO: magnet set by the caller)."""
    algo = prefzoo.make_algo(name, gym.make(CYCLIC, n_contexts=3, n_actions=5, seed=7), mode="exact", **hyperparams)
    algo.pi = pi.copy()
    return algo


# ---------------------------------------------------------------- exact updates vs the papers' formulas
def test_inpo_exact_step_is_the_papers_omd():
    game, pi = small_game(), random_policy((3, 5), 0)
    beta, eta = 0.3, 0.8
    algo = exact_step("inpo", pi, beta=beta, eta=eta)
    algo.step()
    win = win_rates_by_loop(game.P, pi)
    expected = normalized(pi ** (1 - eta * beta) * game.ref ** (eta * beta) * np.exp(eta * win))
    np.testing.assert_allclose(algo.pi, expected, rtol=0, atol=1e-10)


def test_egpo_exact_step_is_the_extragradient():
    game, pi = small_game(), random_policy((3, 5), 1)
    beta, eta = 0.3, 0.8

    def omd(opponent):
        return normalized(pi ** (1 - eta * beta) * game.ref ** (eta * beta)
                          * np.exp(eta * win_rates_by_loop(game.P, opponent)))

    algo = exact_step("egpo", pi, beta=beta, eta=eta)
    algo.step()
    np.testing.assert_allclose(algo.pi, omd(omd(pi)), rtol=0, atol=1e-10)


def test_mpo_exact_step_is_magnetic_mirror_descent_and_the_magnet_moves():
    game, pi, magnet = small_game(), random_policy((3, 5), 2), random_policy((3, 5), 3)
    beta, eta = 0.3, 0.8
    algo = exact_step("mpo", pi, beta=beta, eta=eta, magnet_every=2)
    algo.magnet = np.log(magnet)
    algo.learn(1)  # iteration 1 of the phase: the magnet stays
    expected = normalized((pi * magnet ** (eta * beta) * np.exp(eta * win_rates_by_loop(game.P, pi)))
                          ** (1 / (1 + eta * beta)))
    np.testing.assert_allclose(algo.pi, expected, rtol=0, atol=1e-10)
    np.testing.assert_allclose(np.exp(algo.magnet), magnet, atol=1e-12)
    algo.learn(1)  # the phase's last iteration: the magnet becomes the new iterate
    np.testing.assert_allclose(np.exp(algo.magnet), algo.pi, atol=1e-12)


def test_dno_exact_step_is_multiplicative_weights_on_the_win_rate():
    game, pi = small_game(), random_policy((3, 5), 4)
    algo = exact_step("dno", pi, eta=0.7)
    algo.step()
    np.testing.assert_allclose(algo.pi, normalized(pi * np.exp(0.7 * win_rates_by_loop(game.P, pi))), atol=1e-10)


# ---------------------------------------------------------------- population minimizers of the sample losses
def minimize_over_tabular_logits(game, loss_of_log_pi):
    """argmin over free tabular logits θ of ``loss_of_log_pi(log softmax(log π_ref + θ))`` (L-BFGS, float64)."""
    log_ref = torch.tensor(np.log(game.ref))
    theta = torch.zeros_like(log_ref, requires_grad=True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = loss_of_log_pi(torch.log_softmax(log_ref + theta, dim=1))
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    return torch.softmax(log_ref + theta, dim=1).detach().numpy()


def pair_population(game, weights_first, weights_second):
    """Indices and weights ρ(x)·w1(y)·w2(y') of every (x, y, y') triple, flattened."""
    X, Y = game.ref.shape
    x, y, y2 = (a.ravel() for a in np.meshgrid(np.arange(X), np.arange(Y), np.arange(Y), indexing="ij"))
    return x, y, y2, torch.tensor(game.rho[x] * weights_first[x, y] * weights_second[x, y2])


@pytest.mark.parametrize("opponent_seed", [None, 5])  # None: INPO's self-play; else EGPO's second step
def test_pair_loss_population_minimizer_is_the_omd_step(opponent_seed):
    game, pi = small_game(), random_policy((3, 5), 6)
    beta, eta = 0.2, 0.9
    opponent = pi if opponent_seed is None else random_policy((3, 5), opponent_seed)
    x, y, y2, w = pair_population(game, pi, pi)
    win = win_rates_by_loop(game.P, opponent)
    # E[target | y, y']: η(P(y≻y') − ½) for one duel of the pair, η(P(y≻π_opp) − P(y'≻π_opp)) against z ~ π_opp
    target = eta * (game.P[x, y, y2] - 0.5) if opponent_seed is None else eta * (win[x, y] - win[x, y2])
    log_old, log_ref = torch.tensor(np.log(pi)), torch.tensor(np.log(game.ref))

    def loss(log_new):
        h = omd_log_ratio(log_new, log_old, log_ref, eta, beta)
        return pair_loss(h[x, y], h[x, y2], torch.tensor(target), w)

    got = minimize_over_tabular_logits(game, loss)
    expected = normalized(pi ** (1 - eta * beta) * game.ref ** (eta * beta) * np.exp(eta * win))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_mpo_sample_loss_population_minimizer_is_the_magnetic_step():
    from prefzoo.algorithms.nash_md import prox_score
    from prefzoo.algorithms.wind import regression_loss

    game, pi, magnet = small_game(), random_policy((3, 5), 8), random_policy((3, 5), 9)
    beta, eta = 0.3, 0.6
    X, Y = pi.shape
    x, y = (a.ravel() for a in np.meshgrid(np.arange(X), np.arange(Y), indexing="ij"))
    w = torch.tensor(game.rho[x] * pi[x, y])
    label = torch.tensor(win_rates_by_loop(game.P, pi)[x, y])  # E[b | y] with y' ~ π_t
    offset = torch.zeros(X, dtype=torch.float64, requires_grad=True)
    log_old, log_magnet = torch.tensor(np.log(pi)), torch.tensor(np.log(magnet))
    log_ref = torch.tensor(np.log(game.ref))
    theta = torch.zeros(X, Y, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([theta, offset], lr=1, max_iter=500, tolerance_grad=1e-14, tolerance_change=1e-16,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        log_new = torch.log_softmax(log_ref + theta, dim=1)
        score = prox_score(log_new[x, y], log_old[x, y], log_magnet[x, y], offset[x], eta, beta)
        loss = regression_loss(score, label, "sq", w)
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    got = torch.softmax(log_ref + theta, dim=1).detach().numpy()
    expected = normalized((pi * magnet ** (eta * beta) * np.exp(eta * win_rates_by_loop(game.P, pi)))
                          ** (1 / (1 + eta * beta)))
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_dno_loss_population_minimizer_is_multiplicative_weights():
    game, pi = small_game(), random_policy((3, 5), 10)
    eta = 0.7
    x, y, y2, w = pair_population(game, pi, pi)
    reward = torch.tensor(win_rates_by_loop(game.P, pi))  # exact r_t = P(y ≻ π_t)
    log_old = torch.tensor(np.log(pi))

    def loss(log_new):
        ratio = log_new - log_old
        return dno_loss(ratio[x, y], ratio[x, y2], reward[x, y], reward[x, y2], eta, w)

    got = minimize_over_tabular_logits(game, loss)
    np.testing.assert_allclose(got, normalized(pi * np.exp(eta * reward.numpy())), atol=1e-6)


def test_xpo_without_optimism_on_bradley_terry_reaches_the_rlhf_optimum():
    """α = 0: pairs y ~ π_t, ỹ ~ π_ref, soft labels P(y≻ỹ) = σ(r(y) − r(ỹ)) → π ∝ π_ref·exp(r/β)."""
    game, pi, beta = small_game("bt"), random_policy((3, 5), 11), 0.5
    x, y, y2, w = pair_population(game, pi, game.ref)
    log_ref = torch.tensor(np.log(game.ref))

    def loss(log_new):
        h = log_new - log_ref
        return preference_loss(h[x, y] - h[x, y2], torch.tensor(game.P[x, y, y2]), beta, "sigmoid", w)

    got = minimize_over_tabular_logits(game, loss)
    np.testing.assert_allclose(got, normalized(game.ref * np.exp(game.rewards / beta)), atol=1e-6)
    np.testing.assert_allclose(game.P, expit(game.rewards[:, :, None] - game.rewards[:, None, :]), atol=1e-12)


# ---------------------------------------------------------------- the papers' claims, exact mode, defaults
def kl_to_nash(algo, beta):
    return algo.game.expectation(rel_entr(algo.game.nash(beta), algo.policy_probs()).sum(1))


@pytest.mark.parametrize("name, bound", [("egpo", 1e-8), ("inpo", 1e-6)])
def test_last_iterate_reaches_the_regularized_equilibrium(name, bound):
    algo = prefzoo.make_algo(name, CYCLIC, mode="exact", beta=0.1).learn(3000, eval_freq=3000)
    assert kl_to_nash(algo, 0.1) < bound
    assert algo.evaluate()["game/kl_to_target"] < bound


def test_mpo_last_iterate_approaches_the_unregularized_equilibrium():
    """Measured with the defaults (β 0.1, η 1, magnet every 50): exploitability 0.0055 at 500
    iterations, 0.0029 at 1,000, 0.0007 at 3,000 (π_ref: 0.177), while one regularized phase
    alone (magnet never moved) stalls at the exploitability of π*_β."""
    algo = prefzoo.make_algo("mpo", CYCLIC, mode="exact").learn(3000, eval_freq=3000)
    exploitability = algo.evaluate()["game/exploitability"]
    assert exploitability < 0.01
    frozen = prefzoo.make_algo("mpo", CYCLIC, mode="exact", magnet_every=10**6).learn(3000, eval_freq=3000)
    assert frozen.evaluate()["game/exploitability"] > 10 * exploitability


# ---------------------------------------------------------------- sample mode
# SPO runs a fixed number of iterations, not to a query budget: identical responses are not compared,
# so a policy that has converged to one response per prompt stops spending queries
def test_spo_reaches_the_reward_maximizing_response_on_bradley_terry():
    algo = prefzoo.make_algo("spo", "prefzoo/PrefBandit-v0", seed=0).learn(500, eval_freq=500)
    best = algo.game.rewards.argmax(1)
    assert algo.policy_probs()[np.arange(len(best)), best].min() > 0.9


def test_spo_on_a_cyclic_game_the_average_iterate_beats_the_reference_and_the_last_does_not():
    """What is measured (defaults, 500 iterations ≈ 96k comparisons, 5 seeds; π_ref 0.177): the
    average iterate's exploitability 0.071 ± 0.007, the last iterate's 0.232 ± 0.012 — the last
    iterate of SPO's unregularized policy gradient orbits the equilibrium, as its paper's theorems
    (about the average) allow; a smaller lr trades the orbit for slower learning (lr 0.002: last
    0.15 but on Bradley–Terry the best response has only ≈ 0.5 of the mass after as many steps)."""
    ref = prefzoo.make_algo("spo", CYCLIC).evaluate()["game/exploitability"]
    runs = [prefzoo.make_algo("spo", CYCLIC, seed=seed).learn(500, eval_freq=500).evaluate() for seed in range(5)]
    last = np.array([m["game/exploitability"] for m in runs])
    average = np.array([m["game/avg_exploitability"] for m in runs])
    assert ref - average.mean() > 5 * average.std(ddof=1) / np.sqrt(5), (ref, average)
    assert last.mean() > ref - 2 * last.std(ddof=1) / np.sqrt(5), (ref, last)


@pytest.mark.parametrize("name", ["inpo", "egpo"])
def test_sample_mode_cuts_kl_to_the_regularized_equilibrium(name):
    algo = prefzoo.make_algo(name, CYCLIC, seed=0, mode="sample", eta=0.2)
    start = algo.evaluate()["game/kl_to_target"]
    while algo.queries < 40_000:
        algo.learn(10, eval_freq=10**6)
    assert algo.evaluate()["game/kl_to_target"] < start / 4


def test_a_budgeted_run_stops_when_self_play_has_nothing_left_to_compare(tmp_path):
    """SPO on a 2-response Bradley–Terry game collapses onto the better response; its groups are then
    identical, no pair is compared and the policy no longer moves: a query-budgeted run stops there
    ("no queries") instead of iterating toward a budget it can never reach."""
    from prefzoo.zoo import config, rundir, runner

    env = "prefzoo/PrefBandit-v0"
    overrides = {"lr": 0.3, "lr_decay_start": 0, "eval_freq": 5, "save_freq": 1000,
                 "env_kwargs": {"n_contexts": 2, "n_actions": 2}}
    (tmp_path / "no_configs").mkdir()
    cfg = config.resolve("spo", env, 0, {**overrides, "iterations": 10**6}, tmp_path / "no_configs", "cpu")
    result = runner.train(cfg, rundir.new_run_dir(tmp_path, "spo", env), progress=False, verbose=False,
                          budget=10**6)
    assert result["status"] == "no queries" and result["iteration"] < 10**4, result
    # read at query budgets (compare, benchmark), its last evaluation holds up to the budget
    logged = rundir.progress_arrays(result["run_dir"])
    held = rundir.budget_arrays(result, 10**6)
    assert held["cost/queries"][-1] == 10**6 and held["game/exploitability"][-1] == logged["game/exploitability"][-1]
    assert len(rundir.budget_arrays({**result, "status": "done"}, 10**6)["cost/queries"]) == len(logged["cost/queries"])
