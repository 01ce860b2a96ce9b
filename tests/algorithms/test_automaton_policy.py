"""The zoo on a game exact at any size: sample-mode algorithms train the automaton policy on
``prefzoo/AnswerTokenGame-v0`` from counted comparisons, and their metrics are exact over all V^L
sequences (the game's dynamic programs, themselves checked in tests/envs/test_answer_token.py)."""

from __future__ import annotations

import copy
import itertools

import gymnasium as gym
import numpy as np
import pytest
import torch
from scipy.stats import chisquare

import prefzoo
from prefzoo.envs import metrics
from prefzoo.envs.answer_token import CandidatePolicy

BIG = {"n_contexts": 1, "vocab_size": 10, "max_length": 12, "n_states": 1, "n_answers": 3}  # 10^12 sequences
SMALL = {"n_contexts": 2, "vocab_size": 6, "max_length": 6, "n_states": 2, "n_answers": 3}


def test_the_policy_starts_at_pi_ref_and_a_snapshot_plays_the_same_game():
    env = gym.make("prefzoo/AnswerTokenGame-v0", **SMALL)
    game = env.unwrapped.game
    algo = prefzoo.make_algo("wind", env, seed=0, mode="sample", policy="automaton")
    np.testing.assert_allclose(algo.policy.game_view().log_probs, game.reference.log_probs, atol=1e-12)
    assert algo.evaluate()[metrics.KL_TO_REF] == pytest.approx(0.0, abs=1e-12)
    handles = algo.policy.sample(np.array([0, 1, 1]), np.random.default_rng(0))
    tokens = game.rows(handles)
    x = torch.tensor([0, 1, 1])
    np.testing.assert_allclose(algo.policy.log_prob(x, torch.as_tensor(handles)).detach().numpy(),
                               game.reference.log_prob(x.numpy(), tokens), rtol=1e-6)
    snapshot = copy.deepcopy(algo.policy)
    assert snapshot.game is game and snapshot.logits is not algo.policy.logits
    with pytest.raises(ValueError, match="responses are not listed"):
        algo.policy.probs()


def test_wind_lowers_the_exact_kl_to_its_target_on_1e12_sequences():
    """β = 0.05 on a Bradley–Terry answer game: KL(π*_β ‖ π_ref) = 0.78; 20 iterations of 4,096
    comparisons bring it to about 0.2 (measured: 0.198)."""
    env = gym.make("prefzoo/AnswerTokenGame-v0", **BIG)
    algo = prefzoo.make_algo("wind", env, seed=0, mode="sample", policy="automaton", beta=0.05, eta=1.0,
                             eta_decay=True, lr=0.01, grad_steps=5, batch_size=4096)
    start = algo.evaluate()[metrics.KL_TO_TARGET]
    algo.learn(20, eval_freq=20)
    end = algo.evaluate()[metrics.KL_TO_TARGET]
    game = env.unwrapped.game
    assert start == pytest.approx(game.kl(game.nash(0.05), game.reference))
    assert end < start / 3, (start, end)
    assert algo.queries == game.queries == 20 * 4096


@pytest.mark.parametrize("name", ["online_dpo", "sppo", "grpo", "iterative_bon", "jbond", "nash_mp"])
def test_sample_mode_algorithms_train_it_with_exact_metrics(name):
    env = gym.make("prefzoo/AnswerTokenGame-v0", **SMALL)
    algo = prefzoo.make_algo(name, env, seed=0, mode="sample", policy="automaton", batch_size=64)
    algo.learn(2, eval_freq=2)
    evaluation = algo.evaluate()
    assert algo.queries > 0 and evaluation[metrics.KL_TO_REF] > 0  # the policy moved
    assert {metrics.EXPLOITABILITY, metrics.WIN_RATE_VS_REF} <= set(evaluation)
    assert not any(key.startswith("est/") for key in evaluation)


def test_train_from_the_command_line_logs_exact_metrics_and_exports_the_policy(tmp_path, monkeypatch):
    from prefzoo.zoo import cli, rundir

    monkeypatch.chdir(tmp_path)
    cli.main(["train", "--algo", "wind", "--env", "prefzoo/AnswerTokenGame-v0", "--iterations", "3", "--no-progress",
              "--hp", f"env_kwargs={SMALL}", "--hp", "batch_size=64", "--hp", "eval_freq=1"])
    run = rundir.latest_run_dir(tmp_path / "logs", "wind", "prefzoo/AnswerTokenGame-v0")
    arrays = rundir.progress_arrays(run)
    assert len(arrays[metrics.KL_TO_TARGET]) == 4 and np.all(np.isfinite(arrays[metrics.EXPLOITABILITY]))
    log_probs = np.load(run / "policy_log_probs.npy")
    assert log_probs.shape == (2, 6, 2, 3, 6) and rundir.finished(run)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-12)


TINY = {"n_contexts": 2, "vocab_size": 3, "max_length": 4, "n_states": 2, "n_answers": 3}  # 81 sequences


def gru_policy_of(env, head_scale: float):
    """WIND with policy='gru' on ``env``, its output layer set to N(0, head_scale²) weights (away from π_ref)."""
    algo = prefzoo.make_algo("wind", env, seed=0, mode="sample", policy="gru", beta=0.1)
    with torch.no_grad():
        algo.policy.head.weight.normal_(0.0, head_scale, generator=torch.Generator().manual_seed(1))
    return algo


def every_row(game) -> np.ndarray:
    return np.array(list(itertools.product(range(game.vocab_size), repeat=game.max_length)))


def test_the_gru_policy_starts_at_pi_ref_and_samples_the_law_it_scores():
    """Every one of the 81 sequences scored: the probabilities sum to 1 per prompt, equal π_ref's at
    init, and 20,000 samples of a moved policy match them (chi-square)."""
    env = gym.make("prefzoo/AnswerTokenGame-v0", **TINY)
    game, rows = env.unwrapped.game, every_row(env.unwrapped.game)
    policy = prefzoo.make_algo("wind", env, seed=0, mode="sample", policy="gru").policy
    np.testing.assert_allclose(policy.score_rows(np.zeros(len(rows), int), rows),
                               game.reference.log_prob(np.zeros(len(rows), int), rows), atol=1e-5)
    policy = gru_policy_of(env, 1.0).policy
    for x in (0, 1):
        p = np.exp(policy.score_rows(np.full(len(rows), x), rows))
        assert p.sum() == pytest.approx(1.0, abs=1e-5)
        drawn = policy.sample_rows(np.full(20_000, x), np.random.default_rng(x))
        counts = np.bincount(drawn @ game.vocab_size ** np.arange(game.max_length)[::-1], minlength=len(rows))
        assert chisquare(counts, 20_000 * p / p.sum()).pvalue > 1e-3
    handles = policy.sample(np.array([0, 1]), np.random.default_rng(0))
    np.testing.assert_allclose(policy.log_prob(torch.tensor([0, 1]), torch.as_tensor(handles)).detach().numpy(),
                               policy.score_rows(np.array([0, 1]), game.rows(handles)), atol=1e-6)


def test_monte_carlo_metrics_of_a_neural_policy_cover_the_values_computed_by_listing_every_sequence(tmp_path):
    """A GRU policy away from π_ref: est/kl_to_ref, est/kl_to_target (KL(π*_β ‖ π)), est/win_rate_vs_ref
    and est/exploitability (and ``game.exploitability(policy, 0.1)``, an estimate with ``se``) each lie
    within 4 standard errors of the value computed over all 81 sequences;
    the exported network loads back to the same policy."""
    env = gym.make("prefzoo/AnswerTokenGame-v0", **TINY)
    game, rows = env.unwrapped.game, every_row(env.unwrapped.game)
    algo = gru_policy_of(env, 1.0)
    evaluation = algo.evaluate()
    assert not any(key.startswith("game/") for key in evaluation)

    def table(log_prob):  # [X, 81]
        return np.stack([np.exp(log_prob(np.full(len(rows), x), rows)) for x in range(game.n_contexts)])

    pi, ref, target = table(algo.policy.score_rows), table(game.reference.log_prob), table(game.nash(0.1).log_prob)
    answers = game.answers(None, rows)
    win_of_answer = np.einsum("xab,xb->xa", game.Q, np.stack([np.bincount(answers, r, 3) for r in ref]))
    assert algo.export(tmp_path) == [tmp_path / "gru_policy.pt"]
    restored = gru_policy_of(env, 0.0).policy
    restored.load_state_dict(torch.load(tmp_path / "gru_policy.pt"))
    np.testing.assert_array_equal(restored.score_rows(np.zeros(len(rows), int), rows),
                                  algo.policy.score_rows(np.zeros(len(rows), int), rows))
    exact = {metrics.EST_KL_TO_REF: game.rho @ np.sum(pi * np.log(pi / ref), 1),
             metrics.EST_KL_TO_TARGET: game.rho @ np.sum(target * np.log(target / pi), 1),
             metrics.EST_WIN_RATE_VS_REF: game.rho @ np.sum(pi * win_of_answer[:, answers], 1)}
    listed = CandidatePolicy(game, np.broadcast_to(rows, (game.n_contexts, *rows.shape)), pi / pi.sum(1, keepdims=True))
    exact[metrics.EST_EXPLOITABILITY] = game.exploitability(listed)  # exact over all 81 sequences
    assert exact[metrics.EST_KL_TO_REF] > 0.1
    for key, value in exact.items():
        assert abs(evaluation[key] - value) < 4 * evaluation[f"{key}_se"], (key, evaluation[key], value)
    estimate = game.exploitability(algo.policy, 0.1)  # the §9 call on a neural policy: an estimate with its s.e.
    assert abs(estimate - game.exploitability(listed, 0.1)) < 4 * estimate.se and 0 < estimate.se < 0.05


@pytest.mark.slow
def test_wind_trains_the_gru_policy_toward_the_equilibrium_of_1e12_sequences():
    """4^20 = 1.1·10^12 sequences, Bradley–Terry answers, β = 0.05: KL(π*_β ‖ π_ref) = 0.78 (exact,
    the GRU's start). 20 iterations of 2,048 comparisons (about a minute on one core) lower the
    Monte Carlo KL(π*_β ‖ π_θ), averaged over 8 independent evaluations, by more than 5 standard errors."""
    env = gym.make("prefzoo/AnswerTokenGame-v0", n_contexts=1, vocab_size=4, max_length=20, n_states=1, n_answers=3)
    game = env.unwrapped.game
    algo = prefzoo.make_algo("wind", env, seed=0, mode="sample", policy="gru", beta=0.05, eta=1.0, eta_decay=True,
                             lr=0.01, grad_steps=5, batch_size=2048)
    start = game.kl(game.nash(0.05), game.reference)
    assert algo.evaluate()[metrics.EST_KL_TO_TARGET] == pytest.approx(start, abs=0.1)
    algo.learn(20, eval_freq=20)
    estimates = [game.kl_estimate(game.nash(0.05), algo.policy.game_view(), np.random.default_rng(k)) for k in range(8)]
    end, se = np.mean([m for m, _ in estimates]), np.sqrt(np.sum([s**2 for _, s in estimates])) / 8
    assert start - end > 5 * se, (start, end, se)


def test_nash_md_plays_and_reports_the_token_level_mixture_of_the_gru_policy():
    """One token per response (L = 1): the token-level mixture of weight w is exactly
    π_θ^{1−w}·π_ref^w / Z, computed here from π_θ's and π_ref's scores of every token; Nash-MD with
    mixture='token' is evaluated on that mixture (its evaluation policy scores as the mixture, and its
    est/kl_to_ref lies within 4 s.e. of the mixture's KL)."""
    env = gym.make("prefzoo/AnswerTokenGame-v0", n_contexts=2, vocab_size=5, max_length=1, n_answers=2)
    game = env.unwrapped.game
    algo = prefzoo.make_algo("nash_md", env, seed=0, mode="sample", policy="gru", mixture="token", batch_size=256,
                             lr=0.05, beta=0.1, eta=2.0)
    algo.learn(3, eval_freq=3)
    w, tokens = algo.eta * algo.tau, np.arange(5)[:, None]
    evaluation, kls = algo.evaluate(), []
    for x in (0, 1):
        contexts = np.full(5, x)
        log_pi, log_ref = algo.policy.score_rows(contexts, tokens), game.reference.log_prob(contexts, tokens)
        mixture = np.exp((1 - w) * log_pi + w * log_ref)
        mixture /= mixture.sum()
        np.testing.assert_allclose(np.exp(algo.policy.score_rows(contexts, tokens, w)), mixture, atol=1e-6)
        np.testing.assert_allclose(np.exp(algo.evaluation_policy().log_prob(contexts, tokens)), mixture, atol=1e-6)
        kls.append(np.sum(mixture * (np.log(mixture) - log_ref)))
    assert np.exp(log_pi).round(3).tolist() != mixture.round(3).tolist()  # the policy moved: π_θ ≠ its mixture
    assert abs(evaluation[metrics.EST_KL_TO_REF] - game.rho @ kls) < 4 * evaluation[metrics.EST_KL_TO_REF_SE]
