"""AnswerGame: the answer marginal against a loop over sequences, group rewards against the
table lookup, each utility's optimum against scipy on the simplex, the estimated game's exact
mean reward against binomial sums, and the env (checker, both reward modes, errors)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from scipy.optimize import minimize
from scipy.stats import binom

import prefzoo  # noqa: F401  (registers the ids)
from prefzoo.envs import answer as ans
from prefzoo.envs.estimators import table

SMALL = {"n_contexts": 3, "vocab_size": 4, "max_length": 3, "n_answers": 4}


@pytest.fixture(scope="module")
def game():
    return ans.make_answer_game(**SMALL)


def loop_answer(tokens, vocab_size, n_answers, rule):
    content = []
    for t in tokens:
        if not 1 <= t < vocab_size:
            break
        content.append(int(t))
    if rule == "sum_mod":
        return sum(content) % n_answers
    return content[-1] if content else 0


@pytest.mark.parametrize("rule", ans.EXTRACTORS)
def test_answer_marginal_equals_a_loop_over_sequences(rule):
    game = ans.make_answer_game(**SMALL, extract=rule) if rule == "sum_mod" else \
        ans.make_answer_game(n_contexts=3, vocab_size=4, max_length=3, extract=rule)
    rng = np.random.default_rng(0)
    pi = rng.dirichlet(np.ones(game.n_actions), size=game.n_contexts)
    expected = np.zeros((game.n_contexts, game.n_answers))
    for y, row in enumerate(game.sequences.tokens):
        z = loop_answer(row, game.sequences.vocab_size, game.n_answers, rule)
        assert game.answers[y] == z
        expected[:, z] += pi[:, y]
    nu = game.answer_marginal(pi)
    np.testing.assert_allclose(nu, expected, rtol=0, atol=1e-14)
    np.testing.assert_allclose(nu.sum(1), 1.0, atol=1e-12)
    assert game.M.shape == (game.n_actions, game.n_answers) and set(np.unique(game.M)) == {0.0, 1.0}
    assert (game.M.sum(0)[1:] > 1).all()  # many traces per answer (``last``: 0 = the empty trace only)
    np.testing.assert_allclose(game.answer_marginal(game.ref).sum(1), 1.0, atol=1e-12)


def test_group_rewards_are_the_table_lookup(game):
    rng = np.random.default_rng(1)
    K = 8
    answers = rng.integers(0, game.n_answers, size=(50, K))
    contexts = rng.integers(0, game.n_contexts, size=50)
    log_target = np.log(game.target[contexts])
    for utility in ans.UTILITIES:
        for estimator in ("plugin", "digamma", "aqp"):
            g_log, g_poly = ans.estimator_tables(utility, estimator, K)
            got = ans.group_rewards(answers, log_target, utility, g_log, g_poly)
            g = table(estimator, K)
            for n in range(50):
                for i in range(K):
                    k = int(np.sum(answers[n] == answers[n, i]))
                    z = answers[n, i]
                    expected = {"kl": log_target[n, z] - g[k - 1], "entropy": -g[k - 1],
                                "gini": 1 - (k - 1) / (K - 1), "coherence": (k - 1) / (K - 1)}[utility]
                    assert got[n, i] == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("utility", ans.UTILITIES)
def test_expected_group_reward_is_the_binomial_mean(game, utility):
    K = 6
    g_log, g_poly = ans.estimator_tables(utility, "plugin", K)
    nu = game.answer_marginal(game.ref)
    got = ans.expected_group_reward(nu, game.target, utility, g_log, g_poly)
    for x in range(game.n_contexts):
        for z in range(game.n_answers):
            w = binom.pmf(np.arange(K), K - 1, nu[x, z])  # c = k − 1 others share z
            log_term = w @ g_log
            poly = w @ (np.arange(K) / (K - 1))
            expected = {"kl": np.log(game.target[x, z]) - log_term, "entropy": -log_term,
                        "gini": 1 - poly, "coherence": poly}[utility]
            assert got[x, z] == pytest.approx(expected, abs=1e-12)
    if utility in ("gini", "coherence"):  # the U-statistic is unbiased: exact reward r(z) at ν
        np.testing.assert_allclose(got, game.answer_rewards(nu, utility), atol=1e-12)


def scipy_argmax(F, A, rng, starts=8):
    cons = ({"type": "eq", "fun": lambda v: v.sum() - 1},)
    best = None
    for _ in range(starts):
        res = minimize(lambda v: -F(v), rng.dirichlet(np.ones(A)), bounds=[(1e-12, 1)] * A,
                       constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        if best is None or res.fun < best.fun:
            best = res
    return best.x, -best.fun


@pytest.mark.parametrize("utility", ans.UTILITIES)
def test_optimum_matches_scipy_on_the_simplex(game, utility):
    rng = np.random.default_rng(2)
    opt = game.optimum(utility)
    np.testing.assert_allclose(opt.sum(1), 1.0)
    for x in range(game.n_contexts):
        def F(v, x=x):
            return float(ans.utility_value(v[None], game.target[[x]], utility)[0])

        v, value = scipy_argmax(F, game.n_answers, rng)
        assert F(opt[x]) >= value - 1e-7  # the closed form is at least as good as scipy's search
        assert F(opt[x]) == pytest.approx(value, abs=1e-6)
        if utility != "coherence":  # strictly concave: a unique argmax
            np.testing.assert_allclose(opt[x], v, atol=1e-3)
    if utility == "kl":
        np.testing.assert_allclose(opt, game.target)


def test_metrics_at_the_optimum_and_at_ref(game):
    # a sequence policy whose answer marginal is the target: put ρ(z) on one trace per answer
    pi = np.full((game.n_contexts, game.n_actions), 1e-300)
    first = [int(np.flatnonzero(game.answers == z)[0]) for z in range(game.n_answers)]
    pi[:, first] = game.target
    pi /= pi.sum(1, keepdims=True)
    assert game.kl_answer_to_target(pi, "kl") == pytest.approx(0.0, abs=1e-12)
    assert game.objective(pi, "kl") == pytest.approx(0.0, abs=1e-12)
    nu_ref = game.answer_marginal(game.ref)
    forward = game.expectation((game.target * np.log(game.target / nu_ref)).sum(1))
    assert game.kl_answer_to_target(game.ref, "kl") == pytest.approx(forward)
    reverse = game.expectation((nu_ref * np.log(nu_ref / game.target)).sum(1))
    assert game.objective(game.ref, "kl") == pytest.approx(-reverse)
    H = game.expectation(-(nu_ref * np.log(nu_ref)).sum(1))
    assert game.objective(game.ref, "entropy") == pytest.approx(H)
    uniform_kl = game.expectation((-np.log(game.n_answers) - np.log(nu_ref).mean(1)))  # KL(u‖ν_ref)
    assert game.kl_answer_to_target(game.ref, "entropy") == pytest.approx(uniform_kl)


def test_kl_reward_tangent_is_the_objective_gradient(game):
    """E_ν r = F(ν) and the directional derivative of F along ν' − ν is ⟨r, ν' − ν⟩ (kl)."""
    nu = game.answer_marginal(game.ref)[:1]
    other = game.target[:1]
    r = ans.utility_reward(nu, game.target[:1], "kl")
    assert float((nu * r).sum()) == pytest.approx(float(ans.utility_value(nu, game.target[:1], "kl")[0]))
    h = 1e-6
    F = lambda v: float(ans.utility_value(v, game.target[:1], "kl")[0])  # noqa: E731
    numeric = (F(nu + h * (other - nu)) - F(nu - h * (other - nu))) / (2 * h)
    assert numeric == pytest.approx(float((r * (other - nu)).sum()), rel=1e-6)


def test_env_passes_the_checker_and_rewards_are_exact():
    env = gym.make("prefzoo/AnswerGame-v0", reward_mode="exact", **SMALL)
    check_env(env.unwrapped, skip_render_check=False)
    game = env.unwrapped.game
    nu_ref = game.answer_marginal(game.ref)
    obs, info = env.reset(seed=3)
    for _ in range(20):
        done = False
        while not done:
            obs, reward, done, truncated, step_info = env.step(env.action_space.sample())
        z, x = step_info["answer"], step_info["context"]
        assert x == info["context"], (x, info)
        assert reward == pytest.approx(np.log(game.target[x, z]) - np.log(nu_ref[x, z]))
        assert game.answers[step_info["sequence"]] == z
        obs, info = env.reset()


def test_env_group_reward_uses_the_table_and_a_settable_opponent():
    env = gym.make("prefzoo/AnswerGame-v0", estimator="plugin", group_size=4, utility="entropy", **SMALL)
    game = env.unwrapped.game
    g = table("plugin", 4)
    env.reset(seed=0)
    seen = set()
    for _ in range(60):
        done = False
        while not done:
            _, reward, done, _, step_info = env.step(env.action_space.sample())
        assert 1 <= step_info["count"] <= 4 and reward == pytest.approx(-g[step_info["count"] - 1])
        seen.add(step_info["count"])
        env.reset()
    assert len(seen) > 1
    # an opponent on a single trace: every opponent rollout shares that trace's answer
    trace = 5
    point = np.zeros((game.n_contexts, game.n_actions))
    point[:, trace] = 1.0
    env.unwrapped.set_opponent(point)
    np.testing.assert_array_equal(env.unwrapped.opponent_marginal[:, game.answers[trace]], 1.0)


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown utility 'kll'.*'kl'"):
        gym.make("prefzoo/AnswerGame-v0", utility="kll", **SMALL)
    with pytest.raises(ValueError, match="unknown estimator 'plugn'.*'plugin'"):
        gym.make("prefzoo/AnswerGame-v0", estimator="plugn", **SMALL)
    with pytest.raises(ValueError, match="unknown reward_mode 'comparison'"):
        gym.make("prefzoo/AnswerGame-v0", reward_mode="comparison")
    with pytest.raises(ValueError, match="unknown game argument 'n_answer'"):
        gym.make("prefzoo/AnswerGame-v0", n_answer=3)
    with pytest.raises(ValueError, match="positive"):
        ans.make_answer_game(**{**SMALL, "target": [1.0, 0.0, 1.0, 1.0]})
    with pytest.raises(ValueError, match="19,608 traces per prompt.*enumerates"):
        ans.make_answer_game(vocab_size=8, max_length=5)
    env = gym.make("prefzoo/AnswerGame-v0", **SMALL)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="token id"):
        env.unwrapped.step(9)
