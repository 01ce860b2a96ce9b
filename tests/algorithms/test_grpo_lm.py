"""GRPO on the built-in language model: per-token log-probabilities that sum to the sequence's,
and the zoo's LMGame-v0 config taking off on the seed that used to stay at π_ref (issue 22)."""

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the optional [lm] extra is not installed")
pytest.importorskip("vaderSentiment", reason="the optional [lm] extra is not installed")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import prefzoo  # noqa: E402
from prefzoo.algorithms.lm_policy import LMPolicy  # noqa: E402
from prefzoo.envs.lm.game import LMGame  # noqa: E402
from prefzoo.zoo import config  # noqa: E402

PROMPTS = [f"the {n} was" for n in ("movie", "book", "phone", "pizza")]


def test_token_log_probs_sum_to_the_sequence_log_prob():
    game = LMGame(prompts=PROMPTS, max_new_tokens=8, temperature=0.9)
    policy = LMPolicy(game, torch.device("cpu"))
    x = np.array([0, 1, 2, 3, 1])
    xs, ys = torch.as_tensor(x), torch.as_tensor(policy.sample(x, np.random.default_rng(0)))
    tokens, mask = policy.token_log_probs(xs, ys)
    assert tokens.requires_grad and mask.dtype == torch.bool
    np.testing.assert_array_equal(mask.sum(1).numpy(), [len(game.store.tokens[h]) for h in ys.numpy()])
    assert (tokens[~mask] == 0).all() and (tokens[mask] < 0).all()
    np.testing.assert_allclose(tokens.detach().sum(1).numpy(), policy.log_prob(xs, ys).detach().numpy(), rtol=1e-5)
    ref, _ = policy.token_log_probs(xs, ys, reference=True)
    assert not ref.requires_grad
    np.testing.assert_array_equal(ref.numpy(), tokens.detach().numpy())  # π_θ = π_ref at init


@pytest.mark.slow
def test_zoo_config_takes_off_on_seed_1():
    """Seed 1 of the zoo's LMGame-v0 config stayed at π_ref (held-out win rate 0.59 at iteration 60):
    a sequence-level k3 spike at its 7th iteration froze Adam. Now it reaches at least 0.65 (7-20 s)."""
    cfg = config.resolve("grpo", "prefzoo/LMGame-v0", seed=1)
    algo = prefzoo.make_algo("grpo", gym.make(cfg.env_id, **cfg.env_kwargs), seed=1, **cfg.hyperparams)
    start = algo.evaluate()["est/win_rate_vs_ref"]
    algo.learn(cfg.iterations, eval_freq=cfg.iterations)
    assert algo.evaluate()["est/win_rate_vs_ref"] >= max(0.65, start + 0.1)
