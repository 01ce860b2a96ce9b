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
from prefzoo.envs import metrics  # noqa: E402
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


@pytest.mark.parametrize("seed", range(5))
def test_zoo_config_takes_off_on_every_seed(seed):
    """Seed 1 of the zoo's LMGame-v0 config stayed at π_ref (held-out win rate 0.59 at iteration 60):
    a sequence-level k3 spike at its 7th iteration froze Adam. Now seeds 0–4 each reach at least 0.65
    from π_ref's 0.455 (4-6 s a seed)."""
    cfg = config.resolve("grpo", "prefzoo/LMGame-v0", seed=seed)
    algo = prefzoo.make_algo("grpo", gym.make(cfg.env_id, **cfg.env_kwargs), seed=seed, **cfg.hyperparams)
    start = algo.evaluate()["est/win_rate_vs_ref"]
    algo.learn(cfg.iterations, eval_freq=cfg.iterations)
    assert algo.evaluate()["est/win_rate_vs_ref"] >= max(0.65, start + 0.1)


def test_spo_takes_grpo_s_per_token_options_and_they_reach_its_loss():
    """SPO is GRPO's loop: ``loss_type``, ``kl`` and ``kl_correction`` pass through (checked by name) and reach
    its loss. At the first epoch (ρ = 1, k3 = 0) the loss is −aggregate(A): the GRPO paper's mean over each
    response's tokens, then over responses, is −mean_i A_i = 0 (a group's win rates average ½ exactly),
    while DAPO's mean over all tokens weighs each A_i by its length, ≠ 0 on responses of unequal lengths."""
    env = gym.make("prefzoo/LMGame-v0", prompts=["i bought this book and it", "i bought this pizza and it"],
                   max_new_tokens=12, temperature=0.9)
    losses = {}
    for loss_type in ("grpo", "dapo"):
        algo = prefzoo.make_algo("spo", env, seed=0, policy="hf", batch_size=2, group_size=8, n_epochs=1, lr=1e-2,
                                 beta=0.1, loss_type=loss_type, kl="sequence", kl_correction=True)
        assert (algo.loss_type, algo.kl, algo.kl_correction) == (loss_type, "sequence", True)
        losses[loss_type] = algo.step()[metrics.LOSS]
    assert losses["grpo"] == pytest.approx(0, abs=1e-7) and abs(losses["dapo"]) > 1e-3
    with pytest.raises(ValueError, match="kl"):
        prefzoo.make_algo("spo", env, policy="hf", kl="per-word")
    with pytest.raises(TypeError, match="scale_rewards"):  # SPO's advantage r - 1/2 is never scaled
        prefzoo.make_algo("spo", env, policy="hf", scale_rewards="group")
