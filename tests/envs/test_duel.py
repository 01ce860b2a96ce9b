"""Dueling-bandit winners and regrets (envs/duel.py) on hand-made matrices and against brute force."""

import itertools

import numpy as np
import pytest

from prefzoo.envs import duel, metrics
from prefzoo.envs.game import make_game


def preference(upper: dict[tuple[int, int], float], n: int) -> np.ndarray:
    """A preference matrix from its entries P(i ≻ j), i < j."""
    P = np.full((n, n), 0.5)
    for (i, j), p in upper.items():
        P[i, j], P[j, i] = p, 1 - p
    return P


# 0 beats everyone (Condorcet); 1 beats 2 and 3; 3 beats 2
TRANSITIVE = preference({(0, 1): 0.6, (0, 2): 0.9, (0, 3): 0.55, (1, 2): 0.7, (1, 3): 0.8, (2, 3): 0.3}, 4)
# rock-paper-scissors among 0, 1, 2 plus a response 3 that loses to all but 2:
# Copeland scores 0:2 (beats 1, 3), 1:2 (beats 2, 3), 2:1 (beats 0), 3:1 (beats 2); Borda decides
CYCLIC = preference({(0, 1): 0.6, (0, 2): 0.2, (0, 3): 0.7, (1, 2): 0.9, (1, 3): 0.8, (2, 3): 0.45}, 4)


def test_hand_made_winners():
    assert duel.condorcet_winner(TRANSITIVE) == 0
    np.testing.assert_array_equal(duel.copeland_scores(TRANSITIVE), [3, 2, 0, 1])
    np.testing.assert_allclose(duel.borda_scores(TRANSITIVE), [(0.6 + 0.9 + 0.55) / 3, (0.4 + 0.7 + 0.8) / 3,
                                                               (0.1 + 0.3 + 0.3) / 3, (0.45 + 0.2 + 0.7) / 3])
    assert duel.copeland_winner(TRANSITIVE) == duel.borda_winner(TRANSITIVE) == 0

    assert duel.condorcet_winner(CYCLIC) == duel.NO_WINNER
    np.testing.assert_array_equal(duel.copeland_scores(CYCLIC), [2, 2, 1, 1])
    assert duel.copeland_winner(CYCLIC) == 0  # tie 0/1 at 2 wins: the lowest index
    borda = [(0.6 + 0.2 + 0.7) / 3, (0.4 + 0.9 + 0.8) / 3, (0.8 + 0.1 + 0.45) / 3, (0.3 + 0.2 + 0.55) / 3]
    np.testing.assert_allclose(duel.borda_scores(CYCLIC), borda)
    assert duel.borda_winner(CYCLIC) == 1
    assert duel.reference_winner(CYCLIC) == 0


def test_hand_made_regrets():
    gaps = duel.regret_gaps(TRANSITIVE[None])  # b* = 0: ε(y) = P(0 ≻ y) − ½
    np.testing.assert_allclose(gaps, [[0.0, 0.1, 0.4, 0.05]])
    # pairs (0, 2), (1, 3), (2, 3): weak 0, 0.05, 0.05; average 0.2, 0.075, 0.225; with Copeland scores
    # 3, 2, 0, 1 (cpld 1, 2/3, 0, 1/3) the Copeland regrets are 1/2, 1/2, 5/6
    regret = duel.QueriedRegret()
    regret.add(TRANSITIVE[None], np.zeros(3, int), np.array([0, 1, 2]), np.array([2, 3, 3]))
    assert regret.averages() == pytest.approx({metrics.DUEL_WEAK_REGRET: 0.1 / 3, metrics.DUEL_AVERAGE_REGRET: 0.5 / 3,
                                               metrics.DUEL_COPELAND_REGRET: (0.5 + 0.5 + 5 / 6) / 3})
    # no Condorcet winner: the gaps against the Copeland winner 0 go negative for 2 (which beats 0),
    # so only the Copeland regret is kept: Copeland scores 2, 2, 1, 1 → pair (2, 3) regrets 1/3
    np.testing.assert_allclose(duel.regret_gaps(CYCLIC[None]), [[0.0, 0.1, -0.3, 0.2]])
    regret = duel.QueriedRegret()
    regret.add(CYCLIC[None], 0, 2, 3)
    assert regret.averages() == pytest.approx({metrics.DUEL_COPELAND_REGRET: 1 / 3})


def brute_force(P: np.ndarray) -> tuple[int, int, set[int]]:
    """(Condorcet or −1, Copeland, the Borda maximizers) by explicit loops (the Borda set allows for
    sums that tie exactly in arithmetic but differ in the last bit in floating point)."""
    n = len(P)
    condorcet = next((i for i in range(n) if all(P[i, j] > 0.5 for j in range(n) if j != i)), -1)
    copeland = [sum(P[i, j] > 0.5 for j in range(n) if j != i) for i in range(n)]
    borda = [sum(P[i, j] for j in range(n) if j != i) / (n - 1) for i in range(n)]
    return condorcet, copeland.index(max(copeland)), {i for i in range(n) if borda[i] > max(borda) - 1e-12}


@pytest.mark.parametrize("family", ["bt", "cyclic", "mixed", "reward_order"])
def test_winners_match_brute_force(family):
    game = make_game(family, n_contexts=12, n_actions=5, seed=3)
    expected = [brute_force(P) for P in game.P]
    np.testing.assert_array_equal(duel.condorcet_winner(game.P), [e[0] for e in expected])
    np.testing.assert_array_equal(duel.copeland_winner(game.P), [e[1] for e in expected])
    assert all(b in e[2] for b, e in zip(duel.borda_winner(game.P), expected, strict=True))
    if family == "bt":  # transitive: the Condorcet winner is the highest hidden reward
        np.testing.assert_array_equal([e[0] for e in expected], game.rewards.argmax(axis=1))


def test_every_tournament_on_four_responses():
    """All 2^6 orientations of the 4-response tournament (P ∈ {0.3, 0.7}) against brute force."""
    pairs = list(itertools.combinations(range(4), 2))
    for signs in itertools.product([0.3, 0.7], repeat=len(pairs)):
        P = preference(dict(zip(pairs, signs, strict=True)), 4)
        condorcet, copeland, borda = brute_force(P)
        assert (duel.condorcet_winner(P), duel.copeland_winner(P)) == (condorcet, copeland)
        assert duel.borda_winner(P) in borda


def test_queried_regret_round_trips_its_sums():
    game = make_game("cyclic", n_contexts=3, n_actions=4, seed=0)
    tracker = duel.QueriedRegret()
    assert tracker.averages() == {}  # no pair yet: no regret
    tracker.add(game.P, np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([3, 2, 1]))
    copy = duel.QueriedRegret()
    copy.load(tracker.state())
    assert copy.averages() == tracker.averages() and copy.pairs == 3
