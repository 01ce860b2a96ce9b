"""Estimate-then-solve: the exact solution in the limit, the binomial rate of its estimate, the
allocation rules, and its errors."""

import csv

import gymnasium as gym
import numpy as np
import pytest

import prefzoo
from prefzoo.algorithms.estimate_then_solve import estimated_preferences, neyman_allocation, pair_costs
from prefzoo.envs.bandit import PrefBanditEnv
from prefzoo.envs.game import PreferenceGame, make_game


def deterministic_game() -> PreferenceGame:
    """A reward-order game without ties: every comparison's outcome is certain (P ∈ {0, 1} off the
    diagonal), so one comparison per pair reveals P exactly."""
    game = make_game("reward_order", n_contexts=4, n_actions=6, seed=1, reward_levels=10_000)
    off_diagonal = ~np.eye(6, dtype=bool)[None].repeat(4, 0)
    assert np.isin(game.P[off_diagonal], (0.0, 1.0)).all()
    return game


def test_a_budget_that_reveals_P_returns_the_games_own_equilibrium():
    game = deterministic_game()
    pairs = 4 * 15
    for beta in (0.1, 0.5):
        algo = prefzoo.make_algo("estimate_then_solve", PrefBanditEnv(game=game), seed=0, beta=beta,
                                 batch_size=pairs, prior_count=1e-12).learn(1)
        np.testing.assert_array_equal(algo.counts, 1.0)  # uniform: every pair once
        np.testing.assert_allclose(algo.policy_probs(), game.nash(beta), rtol=0, atol=1e-10)
        assert algo.evaluate()["game/kl_to_target"] < 1e-12
    lp = prefzoo.make_algo("estimate_then_solve", PrefBanditEnv(game=game), seed=0, beta=0.0, batch_size=pairs,
                           prior_count=1e-12).learn(1)
    assert lp.target_policy() is None
    assert game.exploitability(lp.policy_probs()) < 1e-9  # a Nash equilibrium (the vector need not be unique)



@pytest.mark.parametrize("beta", [0.02, 0.1])
def test_each_resolve_warm_started_from_the_last_is_the_cold_solution(beta):
    """The policy after each iteration (solved from the previous one) is the cold π*_β(P̂) of the
    same estimate to 1e-9."""
    game = make_game("cyclic", n_contexts=4, n_actions=12, seed=0)
    algo = prefzoo.make_algo("estimate_then_solve", PrefBanditEnv(game=game), seed=0, beta=beta, batch_size=200,
                             allocation="adaptive")
    for _ in range(4):
        algo.learn(1)
        cold = PreferenceGame(algo.estimate(), game.ref, game.rho).nash(beta)
        np.testing.assert_allclose(algo.policy_probs(), cold, rtol=0, atol=1e-9)


def sq_error_runs(game, n: int, seeds) -> np.ndarray:
    """‖P̂ − P‖² over the pairs y < y' after exactly n comparisons of each pair, one value per seed."""
    K = game.n_contexts * game.n_actions * (game.n_actions - 1) // 2
    i, j = np.triu_indices(game.n_actions, 1)
    env, out = PrefBanditEnv(game=game), []
    for seed in seeds:
        algo = prefzoo.make_algo("estimate_then_solve", env, seed=seed, batch_size=n * K).learn(1)
        out.append(((algo.estimate()[:, i, j] - game.P[:, i, j]) ** 2).sum())
    return np.array(out)


def test_estimate_error_matches_the_exact_binomial_formula():
    """With n comparisons per pair and a Beta(a/2, a/2) prior, P̂ = (B + a/2)/(n + a), B ~ Bin(n, P):
    E(P̂ − P)² = [n·P(1 − P) + a²(½ − P)²]/(n + a)² exactly; the mean over 100 seeds must lie within
    4 standard errors of the sum over pairs, and the exact value falls as 1/n."""
    game = make_game("cyclic", n_contexts=4, n_actions=5, seed=0)
    i, j = np.triu_indices(5, 1)
    p, a = game.P[:, i, j], 1.0
    means = []
    for n in (4, 16, 64):
        exact = ((n * p * (1 - p) + a**2 * (0.5 - p) ** 2) / (n + a) ** 2).sum()
        runs = sq_error_runs(game, n, range(100))
        se = runs.std(ddof=1) / np.sqrt(len(runs))
        assert abs(runs.mean() - exact) < 4 * se, (n, runs.mean(), exact, se)
        means.append(exact)
    slope = np.polyfit(np.log([4, 16, 64]), np.log(means), 1)[0]
    assert -1.05 < slope < -0.9  # the statistical rate Σ P(1 − P)/n, prior bias aside


def test_policy_error_shrinks_at_the_statistical_rate():
    """KL(π*_β ‖ π̂) is quadratic in P̂ − P near the solution, so its mean falls like 1/n: log-log
    slope of the mean over 60 seeds against n ∈ {16, 64, 256} within [−1.2, −0.8]."""
    game = make_game("cyclic", n_contexts=4, n_actions=5, seed=0)
    K = 4 * 10
    target = game.nash(0.1)
    env = PrefBanditEnv(game=game)
    kls = []
    for n in (16, 64, 256):
        runs = [game.expectation(game.kl(target, prefzoo.make_algo("estimate_then_solve", env, seed=s,
                                                                   batch_size=n * K).learn(1).policy_probs()))
                for s in range(60)]
        kls.append(np.mean(runs))
    slope = np.polyfit(np.log([16, 64, 256]), np.log(kls), 1)[0]
    assert -1.2 < slope < -0.8, (kls, slope)


def test_uniform_allocation_balances_pairs_across_rounds():
    env = gym.make("prefzoo/PrefBandit-Cyclic-v0", n_contexts=3, n_actions=4, seed=0)
    algo = prefzoo.make_algo("estimate_then_solve", env, seed=2, batch_size=7).learn(5)  # 35 over 18 pairs
    assert algo.counts.sum() == algo.queries == 35 and algo.counts.max() - algo.counts.min() == 1


def test_estimate_is_a_preference_tensor_with_half_for_unseen_pairs():
    wins, counts = np.array([[3.0, 0.0, 1.0]]), np.array([[4.0, 0.0, 1.0]])
    P = estimated_preferences(wins, counts, prior_count=2.0, Y=3)
    np.testing.assert_allclose(P[0], [[0.5, 4 / 6, 0.5], [2 / 6, 0.5, 2 / 3], [0.5, 1 / 3, 0.5]])
    np.testing.assert_array_equal(P + P.transpose(0, 2, 1), 1.0)


def test_neyman_allocation():
    costs = np.array([[4.0, 1.0, 0.0, 9.0]])
    fresh = neyman_allocation(costs, np.zeros_like(costs), 60)
    np.testing.assert_array_equal(fresh, [[20, 10, 0, 30]])  # ∝ √c = 2 : 1 : 0 : 3
    topped = neyman_allocation(costs, np.array([[20.0, 0.0, 0.0, 0.0]]), 40)  # pair 0 is at its target
    assert topped.sum() == 40 and topped[0, 0] == 0 and topped[0, 1] > 0


def test_adaptive_rule_favours_pairs_the_estimate_weighs():
    game = make_game("cyclic", n_contexts=2, n_actions=6, seed=0)
    pi = np.tile([0.9, 0.02, 0.02, 0.02, 0.02, 0.02], (2, 1))
    costs = pair_costs(np.full((2, 6, 6), 0.5), pi, game.rho, explore=0.1)
    i, j = np.triu_indices(6, 1)
    involves_top = i == 0
    assert costs[:, involves_top].min() > 10 * costs[:, ~involves_top].max()
    env = gym.make("prefzoo/PrefBandit-Cyclic-v0", n_contexts=3, n_actions=6, seed=0)
    algo = prefzoo.make_algo("estimate_then_solve", env, seed=0, allocation="adaptive", batch_size=300).learn(3)
    assert algo.queries == 900 and algo.counts.min() >= 0 and algo.counts.max() > 3 * algo.counts.mean()


def test_errors():
    with pytest.raises(ValueError, match=r"unknown allocation 'uniformm' \(did you mean 'uniform'\?\)"):
        prefzoo.make_algo("estimate_then_solve", "prefzoo/PrefBandit-v0", allocation="uniformm")
    for kwargs, match in (({"beta": -0.1}, "beta must be a finite number >= 0"),
                          ({"prior_count": 0}, "prior_count must be a finite number > 0"),
                          ({"explore": 0}, r"explore must be a finite number in \(0, 1\]"),
                          ({"mode": "exact"}, "supports mode")):
        with pytest.raises(ValueError, match=match):
            prefzoo.make_algo("estimate_then_solve", "prefzoo/PrefBandit-v0", **kwargs)
    too_many = gym.make("prefzoo/TokenGame-v0", n_contexts=2, vocab_size=8, max_length=5,
                        preference=lambda x, t, t2: np.full(len(x), 0.5))  # 19,608 listed sequences
    with pytest.raises(ValueError, match=r"reads every response's probability .* at most 8,192 per context"):
        prefzoo.make_algo("estimate_then_solve", too_many)


def test_solves_its_own_estimate_on_a_game_without_exact_services():
    """A callable preference (no exact services, 40 listed sequences): estimate-then-solve compares
    pairs and solves P̂; the game estimates its win rate against π_ref. With P(y ≻ y') = ½ + (|y'| − |y|)/8
    (shorter wins), the exact win rate of its policy (computed here from the listed lengths) lies
    within 5 s.e. of the estimate and above ½."""
    def content_length(tokens):  # rows padded with V = 4 after EOS = 0
        return ((tokens > 0) & (tokens < 4)).sum(1)

    def shorter_wins(x, tokens, tokens2):
        return 0.5 + (content_length(tokens2) - content_length(tokens)) / 8

    env = gym.make("prefzoo/TokenGame-v0", n_contexts=2, vocab_size=4, max_length=3, preference=shorter_wins)
    game = env.unwrapped.game
    algo = prefzoo.make_algo("estimate_then_solve", env, seed=0, beta=0.05, batch_size=2000).learn(3)
    lengths = content_length(game.sequences.tokens)
    P = 0.5 + (lengths[None, :] - lengths[:, None]) / 8  # P[y, y'] = ½ + (|y'| − |y|)/8
    exact = float(np.einsum("x,xi,ij,xj->", game.rho, algo.policy_probs(), P, game.ref))
    evaluation = algo.evaluate()
    assert algo.queries == game.queries == 6000 and exact > 0.55
    assert abs(evaluation["est/win_rate_vs_ref"] - exact) < 5 * evaluation["est/win_rate_vs_ref_se"]


def test_candidates_restrict_a_game_of_1e19_sequences_to_draws_from_the_reference():
    """candidates=M on AnswerTokenGame (16^16 sequences per prompt): M rows per prompt drawn from
    π_ref, the game restricted to them with a uniform reference. Independent checks: after 2,000
    comparisons of each pair its policy is within sampling error of PreferenceGame(Q[a_i, a_j],
    uniform).nash(β) built from the true Q and the draws' answers; and that restricted solution's
    answer marginal approaches ν*_β as M grows (self-normalized importance sampling over exact draws)."""
    env = gym.make("prefzoo/AnswerTokenGame-v0", family="cyclic", n_contexts=2, n_answers=4, seed=0)
    game = env.unwrapped.game
    M, beta = 8, 0.1

    def restricted(answers):  # [2, M] -> the game over the draws, uniform reference
        return PreferenceGame(np.stack([game.Q[x][a][:, a] for x, a in enumerate(answers)]),
                              np.full(answers.shape, 1 / answers.shape[1]))

    algo = prefzoo.make_algo("estimate_then_solve", env, seed=0, beta=beta, candidates=M, batch_size=2 * 28 * 2000)
    algo.learn(1)
    assert algo.samples == 2 * M and algo.queries == 2 * 28 * 2000 and algo.counts.min() == 2000
    answers = game.handle_answers(algo.responses.ravel()).reshape(2, M)
    assert np.abs(algo.policy_probs() - restricted(answers).nash(beta)).max() < 0.02  # P̂ s.e. ≤ 0.011 per pair
    metrics = algo.evaluate()
    assert metrics["game/answer_kl_to_target"] == pytest.approx(game.answer_kl(game.nash(beta),
                                                                               algo.evaluation_policy()))
    assert "game/kl_to_target" not in metrics  # its support is the M draws: KL(π*‖π) = ∞
    nu_star, rng = game.nash(beta).answer_marginal(), np.random.default_rng(1)
    gaps = []
    for m in (8, 1024):
        draws = game.answers(None, game.reference.sample(np.repeat([0, 1], m), rng)).reshape(2, m)
        weights = restricted(draws).nash(beta)
        nu = np.stack([np.bincount(a, weights=p, minlength=4) for a, p in zip(draws, weights, strict=True)])
        with np.errstate(divide="ignore"):  # an answer no draw has: KL = ∞
            gaps.append(np.mean(np.sum(nu_star * np.log(nu_star / nu), axis=1)))
    assert gaps[1] < 0.01 < gaps[0]


def test_candidates_errors():
    with pytest.raises(ValueError, match="candidates must be an integer >= 2"):
        prefzoo.make_algo("estimate_then_solve", "prefzoo/AnswerTokenGame-v0", candidates=1)
    with pytest.raises(ValueError, match="candidates=M needs a game whose policies over drawn responses"):
        prefzoo.make_algo("estimate_then_solve", "prefzoo/PrefBandit-v0", candidates=8)
    with pytest.raises(ValueError, match="reads every response's probability"):
        prefzoo.make_algo("estimate_then_solve", "prefzoo/AnswerTokenGame-v0")  # no candidates: pairs unlisted


def test_a_candidates_run_resumes_to_the_same_curve(tmp_path):
    """The candidates are drawn from the seeded generator at construction, so a run resumed from its
    checkpoint restricts the game to the same rows and logs the same progress.csv as a straight run."""
    from prefzoo.zoo import config, rundir, runner

    env_id = "prefzoo/AnswerTokenGame-v0"

    def cfg(iterations):
        return config.resolve("estimate_then_solve", env_id, 0, {
            "iterations": iterations, "save_freq": 2, "eval_freq": 1, "candidates": 8, "batch_size": 64,
            "env_kwargs": {"n_contexts": 2, "vocab_size": 4, "max_length": 4, "n_answers": 3}}, device="cpu")

    def curve(run):
        return [{k: v for k, v in row.items() if k != "time/wall_s"}
                for row in csv.DictReader((run / "progress.csv").open())]

    straight = rundir.new_run_dir(tmp_path / "a", "estimate_then_solve", env_id)
    runner.train(cfg(4), straight, progress=False, verbose=False)
    halted = rundir.new_run_dir(tmp_path / "b", "estimate_then_solve", env_id)
    runner.train(cfg(2), halted, progress=False, verbose=False)
    runner.train(cfg(4), halted, resume=True, progress=False, verbose=False)
    assert len(curve(straight)) == 5 and curve(halted) == curve(straight)
    assert (straight / "candidate_policy.npz").exists()
