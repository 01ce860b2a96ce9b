"""TokenGame: sequence enumeration and indexing, the exact sequence-level game (P, π_ref,
equilibria), the game too large to enumerate (P on the fly, exact metrics off), the
autoregressive samplers against the enumerated probabilities, the Gymnasium env (checker,
episodes, rewards, errors) and stable-baselines3 PPO on it.

Independent checks: sequences are built here by explicit loops, features by hand, the policy's
sampling frequencies are compared with its enumerated probabilities, and PPO's sequence law is
enumerated from its own per-token action probabilities.
"""

from __future__ import annotations

import itertools
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from scipy.special import expit

import prefzoo  # noqa: F401  (registers the ids)
from prefzoo.algorithms.policies import make_policy
from prefzoo.envs.sequences import (
    EOS,
    count_sequences,
    enumerate_sequences,
    sequence_features,
    sequence_index,
    sequence_tokens,
)
from prefzoo.envs.token import MAX_EXACT_SEQUENCES, TokenOracle, make_token_game

CPU = torch.device("cpu")
TOKEN_IDS = ["prefzoo/TokenGame-v0", "prefzoo/TokenGame-Cyclic-v0"]


def small_game(family="cyclic", **kw):
    return make_token_game(family, **{"n_contexts": 2, "vocab_size": 4, "max_length": 3, **kw})


# ---------------------------------------------------------------- sequence structure
def test_default_size_is_781_sequences():
    assert count_sequences(6, 4) == 1 + 5 + 25 + 125 + 625 == 781
    game = make_token_game("cyclic")
    assert game.P.shape == (8, 781, 781) and game.sequences.tokens.shape == (781, 4)


def test_enumeration_order_and_index_round_trip():
    V, L = 4, 3
    tokens, lengths = enumerate_sequences(V, L)
    expected = []  # short-lex by explicit loops: content, then EOS (below L), then pads (V)
    for k in range(L + 1):
        for content in itertools.product(range(1, V), repeat=k):
            row = list(content) + ([EOS] if k < L else [])
            expected.append(row + [V] * (L - len(row)))
    np.testing.assert_array_equal(tokens, np.array(expected))
    np.testing.assert_array_equal(lengths, [sum(1 for t in r if 1 <= t < V) for r in expected])
    idx = sequence_index(torch.as_tensor(tokens), V).numpy()
    np.testing.assert_array_equal(idx, np.arange(len(tokens)))
    # whatever follows EOS does not change the index
    noisy = tokens.copy()
    after = np.arange(L)[None] > np.where(lengths < L, lengths, L)[:, None]
    noisy[after] = 2
    np.testing.assert_array_equal(sequence_index(torch.as_tensor(noisy), V).numpy(), idx)
    # and the closed-form decode inverts it, here and for V = 2 (a single content token)
    np.testing.assert_array_equal(sequence_tokens(idx, V, L), tokens)
    np.testing.assert_array_equal(sequence_tokens(np.arange(6), 2, 5), enumerate_sequences(2, 5)[0])


def test_sequence_features_by_hand():
    V, L = 4, 3
    psi = sequence_features(np.array([[2, 3, EOS], [2, 2, 2], [EOS, V, V]]), V, L)
    uni, bi, length = psi[:, :3], psi[:, 3:12].reshape(3, 3, 3), psi[:, 12:]
    np.testing.assert_array_equal(uni, [[0, 1, 1], [0, 3, 0], [0, 0, 0]])
    assert bi[0, 1, 2] == 1 and bi[0].sum() == 1  # the bigram (2, 3)
    assert bi[1, 1, 1] == 2 and bi[1].sum() == 2  # (2, 2) twice
    assert bi[2].sum() == 0
    np.testing.assert_array_equal(length.argmax(1), [2, 3, 0])


# ---------------------------------------------------------------- the exact game
def test_bt_preference_is_sigmoid_of_the_score_difference():
    game = small_game("bt")
    r = game.rewards
    np.testing.assert_allclose(game.P, expit(r[:, :, None] - r[:, None, :]), atol=1e-12)
    np.testing.assert_allclose(game.P + game.P.transpose(0, 2, 1), 1.0, atol=1e-12)


def test_reference_is_a_nontrivial_full_support_distribution():
    game = make_token_game("cyclic", n_contexts=4)
    np.testing.assert_allclose(game.ref.sum(1), 1.0, atol=1e-12)
    assert game.ref.min() > 0
    entropy = -(game.ref * np.log(game.ref)).sum(1)
    assert np.all(entropy < 0.8 * np.log(781))  # far from uniform
    assert np.abs(game.ref[0] - game.ref[1]).sum() > 0.1  # prompt-dependent


def test_same_arguments_same_game_fresh_counters():
    a, b = make_token_game("cyclic", n_contexts=3, seed=5), make_token_game("cyclic", n_contexts=3, seed=5)
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.ref, b.ref)
    assert a is not b and a.P is not b.P
    a.compare(np.zeros(3, int), np.zeros(3, int), np.ones(3, int))
    assert (a.queries, b.queries) == (3, 0)
    assert not np.array_equal(make_token_game("cyclic", n_contexts=3, seed=6).ref, a.ref)


@pytest.mark.parametrize("beta", [0.0, 0.1])
def test_exact_sequence_level_equilibrium(beta):
    game = make_token_game("cyclic", n_contexts=2)
    pi = game.nash(beta)
    assert game.exploitability(pi, beta) <= 1e-8
    assert game.exploitability(game.ref, beta) > 1e-2
    if beta == 0:  # the cyclic game's von Neumann winner is mixed
        assert np.all((pi > 1e-6).sum(1) >= 2)


def test_bt_nash_is_the_best_sequence():
    game = small_game("bt")
    pi = game.nash(0.0)
    np.testing.assert_allclose(pi[np.arange(2), game.rewards.argmax(1)], 1.0, atol=1e-8)


@pytest.mark.parametrize("family", ["bt", "cyclic"])
def test_on_the_fly_preference_equals_the_dense_P(family):
    """The oracle of a game too large to enumerate (decode → features → scores, per pair) is the
    formula the dense P is built from: equal entrywise on an enumerable game."""
    game = make_token_game(family, n_contexts=3, vocab_size=5, max_length=3)
    x, y, y2 = (a.ravel() for a in np.meshgrid(*(np.arange(n) for n in game.P.shape), indexing="ij"))
    tokens = game.sequences.tokens
    np.testing.assert_allclose(game.sequence_preference(x, tokens[y], tokens[y2]), game.P[x, y, y2], rtol=0, atol=1e-12)


def large_game():
    """19,608 sequences per prompt (V = 8, L = 5): above the dense-P limit."""
    return make_token_game("cyclic", n_contexts=2, vocab_size=8, max_length=5, ref_fit_steps=10)


def test_too_large_for_a_dense_P_keeps_a_counted_oracle_and_switches_exact_metrics_off():
    game = large_game()
    assert isinstance(game, TokenOracle) and not game.exact and game.listed
    assert game.responses == "tokens" and game.n_actions == 19_608 > MAX_EXACT_SEQUENCES
    np.testing.assert_allclose(game.ref.sum(1), 1.0, atol=1e-12)
    rng = np.random.default_rng(0)
    x, y, y2 = rng.integers(2, size=2000), rng.integers(19_608, size=2000), rng.integers(19_608, size=2000)
    p = game.prob(x, y, y2)
    np.testing.assert_allclose(p + game.prob(x, y2, y), 1.0, atol=1e-12)
    np.testing.assert_array_equal(game.prob(x, y, y), 0.5)
    assert game.exact_calls == 6000 and game.queries == 0
    wins = game.compare(np.zeros(20_000, int), np.full(20_000, 100), np.full(20_000, 18_000), rng)
    assert game.queries == 20_000
    assert abs(wins.mean() - game.preference(np.array(0), np.array(100), np.array(18_000))) <= 4 * np.sqrt(0.25 / 20_000)
    pi = game.ref
    for call in (lambda: game.nash(0.1), lambda: game.exploitability(pi), lambda: game.win_rates(pi),
                 lambda: game.win_rate(pi, pi), lambda: game.P):
        with pytest.raises(AttributeError, match=r"exact service, and this game has none .* 19,608 sequences per prompt"):
            call()
    env = gym.make("prefzoo/TokenGame-Cyclic-v0", game=game, reward_mode="win_prob")
    env.reset(seed=0)
    terminated = False
    while not terminated:
        _, reward, terminated, _, info = env.step(int(env.action_space.sample()))
    assert reward == info["win_prob"] == game.preference(*(np.array(info[k]) for k in ("context", "sequence", "opponent_action")))


def test_too_large_to_enumerate_is_a_clear_error():
    with pytest.raises(ValueError, match=r"vocab_size=12, max_length=6 gives 1,948,717 sequences .* lower vocab_size"):
        make_token_game("bt", vocab_size=12, max_length=6)
    # sizes that would hang or take gigabytes fail at once, from the closed-form count
    with pytest.raises(ValueError, match=r"max_length=1000000 gives more than \(V−1\)\^L = 10\^698970 sequences"):
        make_token_game("bt", max_length=10**6)
    with pytest.raises(ValueError, match=r"vocab_size=2, max_length=100000 gives 100,001 sequences .* would need about 1.16 TiB"):
        make_token_game("bt", vocab_size=2, max_length=100_000)
    with pytest.raises(ValueError, match=r"unknown game argument 'vocab' \(did you mean 'vocab_size'\?\)"):
        gym.make("prefzoo/TokenGame-v0", vocab=5)


# ---------------------------------------------------------------- policies: enumeration vs sampling
def test_gru_policy_starts_at_pi_ref_and_sums_to_one():
    game = make_token_game("cyclic", n_contexts=4)
    policy = make_policy("gru", game, CPU)
    probs = policy.probs()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-12)
    np.testing.assert_allclose(probs, game.ref, atol=1e-6)
    x, y = torch.tensor([0, 1, 3, 3]), torch.tensor([0, 17, 400, 780])
    np.testing.assert_allclose(policy.log_prob(x, y).exp().detach().numpy(), game.ref[x, y], rtol=1e-4)
    full = policy.log_probs(torch.tensor([3, 0, 3]))
    np.testing.assert_allclose(full.exp().detach().numpy(), game.ref[[3, 0, 3]], atol=1e-6)


def assert_frequencies_match(draws: np.ndarray, probs: np.ndarray, min_expected: float = 20.0):
    """Every sequence expected ≥ ``min_expected`` times, and the pooled rest, within 4 s.e."""
    n = len(draws)
    freq = np.bincount(draws, minlength=len(probs)) / n
    big = probs * n >= min_expected
    assert big.sum() >= 20
    se = np.sqrt(probs[big] * (1 - probs[big]) / n)
    assert np.all(np.abs(freq[big] - probs[big]) <= 4 * se), np.abs(freq[big] - probs[big]).max()
    rest, rest_freq = probs[~big].sum(), freq[~big].sum()
    assert abs(rest_freq - rest) <= 4 * np.sqrt(rest * (1 - rest) / n) + 1e-12


def test_autoregressive_sampling_matches_enumerated_probabilities():
    game = make_token_game("cyclic", n_contexts=4)
    policy = make_policy("gru", game, CPU)
    with torch.no_grad():  # move π_θ away from π_ref so the test is not about game.ref only
        for p in policy.model.head.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0)))
    probs = policy.probs()
    draws = policy.sample(np.full(100_000, 2), np.random.default_rng(0))
    assert_frequencies_match(draws, probs[2])
    # the same numpy seed gives the same draws
    np.testing.assert_array_equal(policy.sample(np.arange(4), np.random.default_rng(1)),
                                  policy.sample(np.arange(4), np.random.default_rng(1)))


def test_token_level_mixture_sampling():
    """Nash-MD's per-token geometric mixture: frequencies match the law enumerated by teacher
    forcing both models, which differs from the sequence-level mixture ∝ π^(1−w)·μ^w."""
    game = make_token_game("cyclic", n_contexts=2)
    policy = make_policy("gru", game, CPU)
    with torch.no_grad():
        for p in policy.model.head.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    w = 0.4
    seqs = game.sequences
    tokens = torch.tensor(seqs.tokens)
    inputs = torch.cat([torch.full((len(tokens), 1), seqs.vocab_size), tokens[:, :-1]], 1)
    prompt = torch.as_tensor(game.features[[1]], dtype=torch.float32).expand(len(tokens), -1)
    with torch.no_grad():
        mix = ((1 - w) * torch.log_softmax(policy.model(prompt, inputs), -1)
               + w * torch.log_softmax(game.ref_lm.build()(prompt, inputs), -1)).log_softmax(-1)
    step = np.take_along_axis(mix.double().numpy(), seqs.tokens.clip(max=seqs.vocab_size - 1)[..., None], -1)[..., 0]
    law = np.exp(np.where(np.arange(seqs.max_length)[None] < seqs.steps[:, None], step, 0.0).sum(1))
    np.testing.assert_allclose(law.sum(), 1.0, atol=1e-6)
    draws = policy.sample_mixture(np.full(100_000, 1), np.random.default_rng(2), w)
    assert_frequencies_match(draws, law / law.sum())
    seq_mix = policy.probs()[1] ** (1 - w) * game.ref[1] ** w
    assert np.abs(seq_mix / seq_mix.sum() - law).sum() > 1e-3


# ---------------------------------------------------------------- the Gymnasium env
@pytest.mark.parametrize("env_id", TOKEN_IDS)
def test_check_env_passes_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, n_contexts=3)
        check_env(env.unwrapped, skip_render_check=False)
        obs, _ = env.reset(seed=0)
        terminated = False
        while not terminated:
            obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
            assert env.observation_space.contains(obs)


def test_episode_mechanics_and_info():
    env = gym.make("prefzoo/TokenGame-Cyclic-v0", n_contexts=3, reward_mode="win_prob")
    game = env.unwrapped.game
    V, L = game.sequences.vocab_size, game.sequences.max_length
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs["tokens"], [V] * L)
    np.testing.assert_array_equal(obs["prompt"], game.features[info["context"]].astype(np.float32))
    for t, token in enumerate([3, 1, 5]):
        obs, reward, terminated, truncated, step_info = env.step(token)
        assert (reward, terminated, truncated) == (0.0, False, False) and obs["length"] == t + 1
        assert step_info["sequence"] == -1 and step_info["win_prob"] == -1.0  # undecided (token_episode)
    obs, reward, terminated, truncated, step_info = env.step(2)  # the L-th token ends it
    assert terminated and not truncated
    seq = step_info["sequence"]
    np.testing.assert_array_equal(game.sequences.tokens[seq], [3, 1, 5, 2])
    assert reward == step_info["win_prob"] == game.P[info["context"], seq, step_info["opponent_action"]]
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)
    env.reset(seed=1)
    obs, reward, terminated, _, step_info = env.step(EOS)  # the empty sequence
    assert terminated and step_info["sequence"] == 0 and game.sequences.decode(0) == "<eos>"
    env.reset()
    with pytest.raises(ValueError, match=r"action must be a token id \(EOS = 0\) in Discrete\(6\)"):
        env.step(6)


def test_reward_modes_and_self_play_opponent():
    env = gym.make("prefzoo/TokenGame-v0", n_contexts=2, reward_mode="log_win_rate")
    game = env.unwrapped.game
    _, info = env.reset(seed=3)
    _, reward, _, _, step_info = env.step(EOS)
    np.testing.assert_allclose(reward, np.log(game.P[info["context"], 0] @ game.ref[info["context"]]))
    target = np.zeros_like(game.ref)
    target[:, 7] = 1.0
    env.unwrapped.set_opponent(target)  # e.g. the learner's own probs() for self-play
    for seed in range(5):
        env.reset(seed=seed)
        assert env.step(EOS)[4]["opponent_action"] == 7
    with pytest.raises(ValueError, match="opponent must be a policy of shape"):
        env.unwrapped.set_opponent(np.ones((2, 3)) / 3)
    with pytest.raises(ValueError, match=r"unknown reward_mode 'winprob'.*'win_prob'"):
        gym.make("prefzoo/TokenGame-v0", reward_mode="winprob")


def test_comparison_rewards_are_counted_queries_with_the_right_mean():
    env = gym.make("prefzoo/TokenGame-Cyclic-v0", n_contexts=2)
    game = env.unwrapped.game
    rewards, probs = [], []
    for seed in range(600):
        env.reset(seed=seed)
        _, reward, _, _, info = env.step(EOS)
        rewards.append(reward)
        probs.append(info["win_prob"])
    assert game.queries == 600 and set(rewards) <= {0.0, 1.0}
    assert abs(np.mean(rewards) - np.mean(probs)) <= 4 * np.sqrt(0.25 / 600)


# ---------------------------------------------------------------- token-level RL baseline
def test_sb3_ppo_improves_the_win_rate_against_pi_ref():
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import DummyVecEnv

    venv = make_vec_env("prefzoo/TokenGame-Cyclic-v0", n_envs=8, seed=0, vec_env_cls=DummyVecEnv,
                        env_kwargs={"reward_mode": "win_prob", "n_contexts": 4, "render_mode": "ansi"})
    game = venv.envs[0].unwrapped.game
    model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=256, n_epochs=4, learning_rate=3e-3,
                gamma=1.0, gae_lambda=1.0, seed=0, device="cpu", verbose=0)
    prompts = game.features.astype(np.float32)

    def next_token_probs(contexts, tokens, lengths):
        obs, _ = model.policy.obs_to_tensor({"prompt": prompts[contexts], "tokens": tokens, "length": lengths})
        with torch.no_grad():
            return model.policy.get_distribution(obs).distribution.probs.double().numpy()

    def win_rate_vs_ref():
        pi = game.sequences.distribution(game.n_contexts, next_token_probs)
        return game.expectation(game.win_rate(pi / pi.sum(1, keepdims=True), game.ref))

    before = win_rate_vs_ref()
    model.learn(total_timesteps=8192)
    after = win_rate_vs_ref()
    assert after > before + 0.1, (before, after)
    assert after <= game.expectation(game.win_rates(game.ref).max(1)) + 1e-9  # the best response bounds it
