"""Reward functions on the built-in language model, as a TRL user brings them: a datasets.Dataset
whose ``answer`` column reaches a verifiable reward, GRPO trained on the rewards themselves,
online DPO labelling its pairs by them, and a game-theoretic algorithm (WIND) seeing the
Bradley–Terry preference σ(r(y) − r(y')) on them, every reward read counted."""

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the optional [lm] extra is not installed")
datasets = pytest.importorskip("datasets", reason="the optional [data] extra is not installed")

import prefzoo  # noqa: E402
from prefzoo.algorithms.online_dpo import reward_labels  # noqa: E402
from prefzoo.envs import metrics  # noqa: E402
from prefzoo.envs.lm.builtin import NEGATIVE, POSITIVE  # noqa: E402
from prefzoo.envs.lm.env import LMGameEnv  # noqa: E402
from prefzoo.envs.oracle import clustered_mean_se  # noqa: E402

NOUNS = ("movie", "book", "phone", "pizza", "hotel", "coffee", "camera", "song", "laptop", "salad", "concert", "car")
WORDS = {"positive": set(POSITIVE), "negative": set(NEGATIVE)}


def answer_rows(template):
    """One prompt per noun; the answer (the sentiment a response must show) alternates by noun."""
    return datasets.Dataset.from_dict({"prompt": [template.format(n=n) for n in NOUNS],
                                       "answer": ["positive" if i % 2 else "negative" for i in range(len(NOUNS))]})


def shows_answer(prompts, completions, answer, **kwargs):
    """1 when the completion holds a word of the answer's sentiment, else 0."""
    return [float(bool(WORDS[a] & set(c.split()))) for c, a in zip(completions, answer, strict=True)]


def answer_env(**kwargs):
    return LMGameEnv(prompts=answer_rows("the {n} was"), eval_prompts=answer_rows("this {n} is"),
                     reward_funcs=shows_answer, max_new_tokens=4, **kwargs)


def match_rate(algo, n=96):
    """Share of held-out responses that show their prompt's answer, with its s.e. clustered by prompt."""
    game = algo.game
    x = np.repeat(game.eval_contexts, n // len(game.eval_contexts))
    y = algo.policy.sample(x, np.random.default_rng(123))
    return clustered_mean_se(np.array(shows_answer(None, game.store.text(y), [game.rows[i]["answer"] for i in x])), x)


def test_grpo_on_a_dataset_column_reward_raises_the_held_out_match_rate():
    env = answer_env()
    # lr 5e-3: per-token ratios averaged over each response (loss_type="grpo", as TRL) move less per step
    # than the sequence-level ratio did; at 3e-3 the match rate levels off near 0.85 (measured)
    algo = prefzoo.make_algo("grpo", env, seed=0, policy="hf", batch_size=16, group_size=4, lr=5e-3, n_epochs=2,
                             beta=0.0, lr_decay_start=0)
    (before, before_se), calls = match_rate(algo), env.game.oracle.calls
    assert calls == 0  # the match rate above is computed here, not by the game
    algo.learn(iterations=40, eval_freq=40)
    after, after_se = match_rate(algo)
    assert after - before > 4 * np.hypot(before_se, after_se), (before, before_se, after, after_se)
    assert algo.queries == 40 * 16 * 4  # one reward per response: G per prompt, not G(G-1)/2 comparisons
    # distinct completions scored once (cached), the one evaluation's included: its 48 responses and π_ref's 48
    assert 0 < env.game.oracle.calls == env.game.spent <= algo.queries + 2 * 48


def test_online_dpo_labels_its_pairs_by_the_rewards_and_wind_sees_their_bradley_terry_preference():
    np.testing.assert_array_equal(reward_labels(np.array([1.0, 0.0, 2.0]), np.array([0.0, 1.0, 2.0])), [1, 0, 0.5])
    env = answer_env(max_queries=10_000)
    game = env.game
    dpo = prefzoo.make_algo("online_dpo", env, seed=0, policy="hf", batch_size=8, lr=1e-3)
    dpo.learn(iterations=2, eval_freq=2)
    assert dpo.queries == game.queries == 2 * 2 * 8  # two rewards per pair (the evaluation's are paid, not queries)
    assert game.spent == game.oracle.calls > 0
    x = np.arange(game.n_train)
    y, y2 = dpo.policy.sample(x, np.random.default_rng(0)), dpo.policy.sample(x, np.random.default_rng(1))
    r, r2 = game.rewards(x, y), game.rewards(x, y2)
    np.testing.assert_allclose(r, shows_answer(None, game.store.text(y), [game.rows[i]["answer"] for i in x]))
    np.testing.assert_allclose(game.prob(x, y, y2), 1 / (1 + np.exp(-(r - r2))))  # T = 1
    wind = prefzoo.make_algo("wind", answer_env(), seed=0, mode="sample", policy="hf", batch_size=8, lr=1e-3)
    wind.learn(iterations=1)
    logged = wind.evaluate()
    assert wind.queries == 8 and wind.game.oracle.calls > 0  # Bernoulli duels on σ(r(y) − r(y'))
    assert 0 <= logged[metrics.LM_SCORE] <= 1 and 0 < logged[metrics.EST_WIN_RATE_VS_REF] < 1
