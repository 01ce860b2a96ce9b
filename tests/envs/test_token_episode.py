"""The shared token episode (:mod:`prefzoo.envs.token_episode`): the base alone on a stub game
(stop at EOS, at L, never at EOS = None; ``finish`` called once with the response), and the one
"undecided" sentinel of the three token envs — typed like the final value, equal to itself under
Gymnasium's ``data_equivalence`` (what ``check_env`` compares infos with), and kept through the
info stacking of a ``sync`` vector env."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env, data_equivalence

import prefzoo  # noqa: F401  (registers the ids)
from prefzoo.envs.token_episode import UNDECIDED, Ending, TokenEpisode, TokenEpisodeEnv


class StubGame:
    """Three prompts, always prompt 2 (no randomness to depend on)."""

    def sample_contexts(self, n, rng):
        return np.full(n, 2)


class EchoEnv(TokenEpisodeEnv):
    """Rewards the response's length; records every call of the hook."""

    outcome_info = {"length": int, "score": float}

    def __init__(self, eos=0, render_mode=None):
        prompts = np.arange(6, dtype=np.int64).reshape(3, 2)
        episode = TokenEpisode(vocab_size=4, max_length=3, eos=eos, prompts=prompts,
                               prompt_space=spaces.MultiDiscrete([6, 6]), prompt_texts=["a", "b", "c"])
        super().__init__(StubGame(), episode, render_mode)
        self.calls = []

    def finish(self, context, tokens, length):
        self.calls.append((context, tokens.tolist(), length))
        return Ending(float(length), {"length": length, "score": 0.5, "extra": "end only"}, f"{length} tokens")


@pytest.mark.parametrize("eos, actions, length", [(0, [2, 0], 2), (0, [1, 2, 3], 3), (None, [0, 0, 0], 3)])
def test_base_episode_stops_at_eos_or_at_the_length_limit(eos, actions, length):
    env = EchoEnv(eos=eos, render_mode="ansi")
    obs, info = env.reset(seed=0)
    assert info == {"context": 2, "prompt": "c"} and obs["prompt"].tolist() == [4, 5]
    assert obs["tokens"].tolist() == [4, 4, 4] and obs["length"] == 0 and env.render() == "'c': <start>\n"
    for t, action in enumerate(actions, 1):
        obs, reward, terminated, truncated, info = env.step(action)
        assert obs["tokens"].tolist()[:t] == actions[:t] and obs["length"] == t and not truncated
        assert terminated == (t == length)
        if not terminated:
            assert reward == 0.0 and info == {"context": 2, "prompt": "c", "length": -1, "score": -1.0}
            assert env.render() == f"'c': {actions[:t]}\n" and env.calls == []
    padded = actions + [4] * (3 - length)
    assert env.calls == [(2, padded, length)]
    assert reward == float(length) and info == {"context": 2, "prompt": "c", "length": length, "score": 0.5,
                                                "extra": "end only"}
    assert env.render() == f"'c': {length} tokens, reward={float(length):.3f}\n"
    with pytest.raises(RuntimeError, match="call reset"):
        env.step(1)
    env.reset()
    with pytest.raises(ValueError, match=r"action must be a token id \(EOS = (0|None)\) in Discrete\(4\), got"):
        env.step(4)


def test_base_env_passes_the_checker():
    check_env(EchoEnv(), skip_render_check=True)


def envs_under_test():
    yield "prefzoo/TokenGame-v0", {"n_contexts": 3}
    yield "prefzoo/AnswerGame-v0", {"n_contexts": 3, "vocab_size": 4, "max_length": 3, "n_answers": 4}
    try:
        import transformers  # noqa: F401
        import vaderSentiment  # noqa: F401
    except ImportError:
        return
    yield "prefzoo/LMGame-v0", {"max_new_tokens": 4}


@pytest.fixture(scope="module", params=list(envs_under_test()), ids=lambda p: p[0])
def made(request):
    env_id, kwargs = request.param
    return gym.make(env_id, **kwargs).unwrapped


def test_undecided_values_are_minus_one_of_the_final_type(made):
    """Before the last step every outcome key holds −1 as its declared type; at the last step
    every key holds a value of that type (so infos stack to one dtype)."""
    declared = type(made).outcome_info
    made.reset(seed=0)
    content = 1 if made.episode.eos != 1 else 2
    for _ in range(made.episode.max_length - 1):
        _, _, terminated, _, info = made.step(content)
        assert not terminated
        for key, kind in declared.items():
            assert info[key] == UNDECIDED == -1 and type(info[key]) is kind, (key, info[key])
    _, _, terminated, _, info = made.step(content)
    assert terminated
    for key, kind in declared.items():
        assert type(info[key]) is kind, (key, info[key])


def test_a_step_that_does_not_end_the_episode_is_equal_to_itself_for_check_env(made):
    """``check_env`` steps twice from one seed and compares the infos with ``data_equivalence``
    (``==`` on scalars): an undecided value must equal itself, which NaN does not."""
    content = 1 if made.episode.eos != 1 else 2
    infos = []
    for _ in range(2):
        made.reset(seed=123)
        infos.append(made.step(content)[4])
    assert data_equivalence(infos[0], infos[1], exact=True)
    assert not data_equivalence({"win_prob": float("nan")}, {"win_prob": float("nan")})  # why not NaN


@pytest.mark.parametrize("finished_first", [True, False])
def test_sync_vector_env_stacks_undecided_and_final_values_in_one_dtype(finished_first):
    """``SyncVectorEnv`` types each info array by the first sub-env's value: with −1.0 (a float)
    before the end, a win probability stacked after it is not truncated, whichever env ends."""
    env = gym.make_vec("prefzoo/TokenGame-v0", num_envs=2, vectorization_mode="sync", n_contexts=3,
                       reward_mode="win_prob")
    env.reset(seed=0)
    actions = np.array([0, 1]) if finished_first else np.array([1, 0])
    _, reward, terminated, _, info = env.step(actions)
    done = int(np.argmax(actions == 0))
    assert terminated.tolist() == [done == 0, done == 1]
    assert info["win_prob"].dtype == np.float64 and info["sequence"].dtype.kind == "i"
    assert info["win_prob"][1 - done] == -1.0 and info["sequence"][1 - done] == -1
    assert 0.0 < info["win_prob"][done] < 1.0 and info["win_prob"][done] == reward[done]
    assert info["sequence"][done] == 0  # the empty sequence
