"""The bandit policies' batched calls against their per-row definitions: ``log_prob`` (the rows of
distinct contexts normalized once) equals ``log_probs(contexts)`` gathered row by row, and
``sample`` (one CDF per distinct context, searched) draws what
:func:`~prefzoo.envs.oracle.sample_categorical` draws on ``probs()[contexts]`` with the same generator."""

import numpy as np
import pytest
import torch

from prefzoo.algorithms.policies import MLPPolicy, TabularPolicy
from prefzoo.envs.game import make_game
from prefzoo.envs.oracle import sample_categorical


@pytest.mark.parametrize("kind", [TabularPolicy, MLPPolicy])
def test_batched_log_prob_and_sample_match_the_per_row_definitions(kind):
    game = make_game("cyclic", n_contexts=5, n_actions=300, seed=0)
    policy = kind(game, torch.device("cpu"))
    with torch.no_grad():
        for parameter in policy.parameters():
            parameter.normal_()
    contexts = np.random.default_rng(1).integers(0, 5, 4000)
    drawn = policy.sample(contexts, np.random.default_rng(7))
    np.testing.assert_array_equal(drawn, sample_categorical(policy.probs()[contexts], np.random.default_rng(7)))
    xs, ys = torch.as_tensor(contexts), torch.as_tensor(drawn)
    per_row = policy.log_probs(xs).gather(-1, ys[:, None])[:, 0]
    torch.testing.assert_close(policy.log_prob(xs, ys), per_row, rtol=0, atol=1e-6)
