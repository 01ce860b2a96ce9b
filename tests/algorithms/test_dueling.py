"""RUCB and Double Thompson Sampling: they find the Condorcet winner, and the duel/ regret that every
pair-comparing algorithm logs equals a plain loop over the definitions."""

import numpy as np
import pytest

import prefzoo
from prefzoo.algorithms import ALGORITHMS
from prefzoo.algorithms.dueling import confidence_bounds, recommended_responses
from prefzoo.envs import metrics
from prefzoo.envs.bandit import PrefBanditEnv
from prefzoo.envs.game import make_game


@pytest.mark.parametrize("name", ["rucb", "double_ts"])
def test_finds_the_condorcet_winner_of_a_transitive_game(name):
    """Bradley–Terry game, 8 contexts × 5 responses (smallest gap P(b* ≻ y) − ½ = 0.12): with a
    budget of 1,600 comparisons (200 per context on average) the recommendation is the Condorcet
    winner in at least 39 of the 40 (seed, context) cases (measured: 40/40 over 10 seeds for both)."""
    game = make_game("bt", n_contexts=8, n_actions=5, seed=0, reward_scale=4.0)
    winner = game.rewards.argmax(axis=1)  # transitive: the Condorcet winner is the best reward
    hits = 0
    for seed in range(5):
        algo = prefzoo.make_algo(name, PrefBanditEnv(game=game), seed=seed, batch_size=200).learn(8, eval_freq=8)
        assert algo.queries == 1600
        pi = algo.policy_probs()
        assert set(np.unique(pi)) <= {0.0, 1.0} and np.allclose(pi.sum(1), 1)  # a point mass
        hits += int((pi.argmax(axis=1) == winner).sum())
    assert hits >= 39


def loop_regret(P: np.ndarray, pairs) -> dict[str, float]:
    """Mean regrets of ``pairs`` [(x, y, y2), …] by loops over the definitions. Copeland (every
    pair): cpld(y) = wins(y)/(n − 1), regret max cpld − (cpld(y) + cpld(y2))/2. Condorcet (pairs of
    contexts where some response beats every other, b*): ε(y) = P(b* ≻ y) − ½, weak min(ε(y), ε(y2)),
    average (ε(y) + ε(y2))/2."""
    copeland, weak, average = [], [], []
    for x, y, y2 in pairs:
        n = P.shape[1]
        wins = [sum(1 for j in range(n) if j != i and P[x, i, j] > 0.5) for i in range(n)]
        copeland.append(max(wins) / (n - 1) - (wins[y] + wins[y2]) / (2 * (n - 1)))
        if n - 1 in wins:
            gap_y, gap_y2 = P[x, wins.index(n - 1), y] - 0.5, P[x, wins.index(n - 1), y2] - 0.5
            weak.append(min(gap_y, gap_y2))
            average.append((gap_y + gap_y2) / 2)
    out = {metrics.DUEL_COPELAND_REGRET: float(np.mean(copeland))}
    if weak:
        out.update({metrics.DUEL_WEAK_REGRET: float(np.mean(weak)), metrics.DUEL_AVERAGE_REGRET: float(np.mean(average))})
    return out


@pytest.mark.parametrize("name,family", [("rucb", "bt"), ("double_ts", "cyclic"), ("wind", "cyclic"),
                                         ("sppo", "mixed"), ("estimate_then_solve", "cyclic")])
def test_logged_regret_equals_a_loop_over_the_definitions(name, family):
    game = make_game(family, n_contexts=3, n_actions=5, seed=2)
    pairs = []

    class Recorded(ALGORITHMS[name]):
        def compare(self, contexts, y, y2):
            pairs.extend(zip(*(a.ravel().tolist() for a in np.broadcast_arrays(contexts, y, y2)), strict=True))
            return super().compare(contexts, y, y2)

    algo = Recorded(PrefBanditEnv(game=game), seed=0, mode="sample", batch_size=40).learn(3)
    logged = algo.evaluate()
    assert len(pairs) == algo.queries > 0
    expected = loop_regret(game.P, pairs)
    assert {k: v for k, v in logged.items() if k.startswith("duel/")} == pytest.approx(expected, abs=1e-12)
    assert all(v >= 0 for v in expected.values())  # no negative "regret" on contexts without a Condorcet winner


def test_no_pairs_no_regret_metrics():
    algo = prefzoo.make_algo("wind", "prefzoo/PrefBandit-v0", mode="exact").learn(2)
    assert not any(key.startswith("duel/") for key in algo.evaluate())


def test_double_ts_regret_falls_below_uniform_pairs():
    """The bandits' point is low regret: DTS's average regret after 2,400 comparisons is below
    a third of that of pairs drawn uniformly (the uniform floor's pairs)."""
    game = make_game("bt", n_contexts=8, n_actions=5, seed=0, reward_scale=4.0)
    dts = prefzoo.make_algo("double_ts", PrefBanditEnv(game=game), seed=0, batch_size=300).learn(8, eval_freq=8)
    uniform = prefzoo.make_algo("estimate_then_solve", PrefBanditEnv(game=game), seed=0, batch_size=300).learn(8)
    assert dts.evaluate()[metrics.DUEL_AVERAGE_REGRET] < uniform.evaluate()[metrics.DUEL_AVERAGE_REGRET] / 3


def test_confidence_bounds_and_recommendation():
    wins = np.zeros((1, 3, 3))
    wins[0, 0, 1], wins[0, 1, 0] = 3, 1  # 0 beat 1 three times in four
    upper, lower = confidence_bounds(wins, np.array([np.e]), alpha=1.0)
    np.testing.assert_allclose(upper[0, 0, 1], 0.75 + np.sqrt(1 / 4))
    np.testing.assert_allclose(lower[0, 1, 0], 0.25 - np.sqrt(1 / 4))
    assert upper[0, 0, 2] == 1.0 and lower[0, 0, 2] == 0.0 and upper[0, 2, 2] == lower[0, 2, 2] == 0.5
    # Copeland of P̂: 0 beats 1 (2 ties at ½ elsewhere) -> 0; Borda breaks a Copeland tie
    assert recommended_responses(wins)[0] == 0
    wins[0, 2, 1], wins[0, 1, 2] = 5, 0  # 2 also beats 1, more clearly: Copeland tie 0/2, Borda -> 2
    assert recommended_responses(wins)[0] == 2


def test_errors():
    with pytest.raises(ValueError, match=r"alpha must be a finite number > 0.5"):
        prefzoo.make_algo("rucb", "prefzoo/PrefBandit-v0", alpha=0.5)
    with pytest.raises(ValueError, match="supports mode"):
        prefzoo.make_algo("double_ts", "prefzoo/PrefBandit-v0", mode="exact")
