"""Every registered ``prefzoo/`` id: Gymnasium's checker, seeding, ``gym.make`` without a prior
import, ``make_vec`` with one-step episodes under both autoreset modes, and kwarg errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

import prefzoo
from prefzoo.envs import PrefBanditVectorEnv

BANDIT_IDS = [env_id for env_id in prefzoo.ENV_IDS if "/PrefBandit" in env_id]


def test_registry_lists_the_bandit_family():
    assert all(env_id.startswith("prefzoo/") for env_id in prefzoo.ENV_IDS)
    assert {"prefzoo/PrefBandit-v0", "prefzoo/PrefBandit-Cyclic-v0", "prefzoo/PrefBandit-Mixed-v0",
            "prefzoo/PrefBandit-RewardOrder-v0"} <= set(prefzoo.ENV_IDS)


@pytest.mark.parametrize("env_id", prefzoo.ENV_IDS)
def test_check_env_without_warnings(env_id):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any gymnasium UserWarning fails the test
        env = gym.make(env_id)
        check_env(env.unwrapped, skip_render_check=False)
        # the passive checker wrapped around by gym.make must stay silent on a real rollout
        env.reset(seed=0)
        for _ in range(3):
            env.step(env.action_space.sample())
            env.reset()
        env.close()


@pytest.mark.parametrize("env_id", prefzoo.ENV_IDS)
def test_same_seed_same_rollout(env_id):
    def rollout(reset_seed, steps=40):
        answer = "/AnswerGame" in env_id  # ALFT: its own reward modes (group/exact)
        env = gym.make(env_id, reward_mode="group" if answer else "comparison")
        # the token episodes' outcome keys, else the bandit's
        keys = tuple(getattr(env.unwrapped, "outcome_info", ("opponent_action", "win_prob")))
        env.action_space.seed(123)
        trace = []
        obs, info = env.reset(seed=reset_seed)
        for _ in range(steps):
            action = env.action_space.sample()
            _, reward, terminated, truncated, step_info = env.step(action)
            flat_obs = gym.spaces.flatten(env.observation_space, obs)  # Box or Dict observations
            trace.append((flat_obs, info["context"], action, reward, terminated, truncated,
                          *(step_info[k] for k in keys)))
            obs, info = env.reset()
        return trace

    a, b, c = rollout(7), rollout(7), rollout(8)
    for step_a, step_b in zip(a, b):
        np.testing.assert_array_equal(step_a[0], step_b[0])
        assert step_a[1:] == step_b[1:]
    assert [s[1:] for s in a] != [s[1:] for s in c]


def test_vector_env_same_seed_same_rollout():
    def rollout(seed):
        env = gym.make_vec("prefzoo/PrefBandit-Mixed-v0", num_envs=16,
                           vectorization_mode="vector_entry_point")
        obs, _ = env.reset(seed=seed)
        out = [obs]
        for _ in range(10):
            obs, reward, _, _, info = env.step(np.arange(16) % env.single_action_space.n)
            out += [obs, reward, info["opponent_action"], info["context"]]
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert not all(np.array_equal(u, v) for u, v in zip(a, c))


def test_gym_make_with_module_prefix_in_fresh_process():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'prefzoo' not in sys.modules\n"
        "env = gym.make('prefzoo:prefzoo/PrefBandit-v0')\n"
        "obs, info = env.reset(seed=0)\n"
        "print(type(env.unwrapped).__name__, obs.shape, env.step(0)[2])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["PrefBanditEnv", "(4,)", "True"]


@pytest.mark.parametrize("env_id", BANDIT_IDS)
def test_make_vec_entry_point_one_step_episodes(env_id):
    n = 32
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="vector_entry_point")
    assert isinstance(env.unwrapped, PrefBanditVectorEnv)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    game = env.unwrapped.game
    features = game.features.astype(np.float32)
    obs, info = env.reset(seed=0)
    np.testing.assert_array_equal(obs, features[info["context"]])
    rng = np.random.default_rng(0)
    seen = []
    for t in range(1, 201):
        actions = rng.integers(0, game.n_actions, size=n)
        acted_obs, acted_ctx = obs.copy(), info["context"].copy()
        obs, reward, terminated, truncated, info = env.step(actions)
        # every step is a real, counted duel on the contexts that were observed
        assert game.queries == t * n
        assert terminated.all() and not truncated.any()
        assert info["_final_obs"].all()
        np.testing.assert_array_equal(info["final_obs"], acted_obs)
        np.testing.assert_array_equal(info["context"], acted_ctx)
        exact = game.P[acted_ctx, actions, info["opponent_action"]]
        np.testing.assert_array_equal(info["win_prob"], exact)
        assert set(np.unique(reward)) <= {0.0, 1.0}
        # the returned observation is a fresh context, already reset
        np.testing.assert_array_equal(obs, features[info["next_context"]])
        seen.append(info["next_context"])
        info = {"context": info["next_context"]}
    # fresh contexts are independent draws from ρ (within 4 standard errors per context)
    freq = np.bincount(np.concatenate(seen), minlength=game.n_contexts) / (200 * n)
    se = np.sqrt(game.rho * (1 - game.rho) / (200 * n))
    assert np.all(np.abs(freq - game.rho) <= 4 * se)


def test_sync_vector_env_next_step_autoreset_wastes_every_other_step():
    """Gymnasium's default SyncVectorEnv (NEXT_STEP autoreset) over the one-step single env:
    after a terminal step, the next ``step`` ignores the actions and only resets. Half of the
    steps are scored duels, half are reset steps with reward 0 and no query. The vector entry
    point (SAME_STEP) scores every step, see the test above."""
    n = 8
    env = gym.make_vec("prefzoo/PrefBandit-v0", num_envs=n, vectorization_mode="sync")
    assert env.metadata["autoreset_mode"] == AutoresetMode.NEXT_STEP
    games = [sub.unwrapped.game for sub in env.envs]
    obs, _ = env.reset(seed=0)
    actions = np.zeros(n, dtype=np.int64)
    for t in range(6):
        before = sum(g.queries for g in games)
        new_obs, reward, terminated, truncated, info = env.step(actions)
        scored = sum(g.queries for g in games) - before
        if t % 2 == 0:  # a real duel
            assert scored == n and terminated.all()
            assert "opponent_action" in info and info["_opponent_action"].all()
            np.testing.assert_array_equal(new_obs, obs)  # the terminal obs, not a fresh one
        else:  # a reset step: the actions are dropped
            assert scored == 0 and not terminated.any()
            assert "opponent_action" not in info
            np.testing.assert_array_equal(reward, 0.0)
        obs = new_obs


def test_sync_vector_env_same_step_scores_every_step():
    n = 8
    env = gym.make_vec("prefzoo/PrefBandit-v0", num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    games = [sub.unwrapped.game for sub in env.envs]
    obs, _ = env.reset(seed=0)
    for t in range(1, 5):
        new_obs, _, terminated, _, info = env.step(np.ones(n, dtype=np.int64))
        assert sum(g.queries for g in games) == t * n and terminated.all()
        np.testing.assert_array_equal(np.stack(info["final_obs"]), obs)  # an object array here
        assert "opponent_action" in info["final_info"]
        obs = new_obs


# ---------------------------------------------------------------- kwargs and errors
def test_make_kwargs_reach_the_game():
    env = gym.make("prefzoo/PrefBandit-Cyclic-v0", n_contexts=5, n_actions=7, feature_dim=3, seed=2)
    game = env.unwrapped.game
    assert game.P.shape == (5, 7, 7) and game.family == "cyclic"
    assert env.observation_space.shape == (3,) and env.action_space.n == 7
    np.testing.assert_array_equal(game.P, prefzoo.make_game("cyclic", n_contexts=5, n_actions=7,
                                                            feature_dim=3, seed=2).P)
    venv = gym.make_vec("prefzoo/PrefBandit-Cyclic-v0", num_envs=3,
                        vectorization_mode="vector_entry_point",
                        n_contexts=5, n_actions=7, feature_dim=3, seed=2)
    np.testing.assert_array_equal(venv.unwrapped.game.P, game.P)
    assert venv.single_action_space.n == 7 and venv.observation_space.shape == (3, 3)


@pytest.mark.parametrize("mode", ["single", "vector"])
def test_unknown_kwarg_suggests_the_right_one(mode):
    expected = r"unknown game argument 'n_contxts' \(did you mean 'n_contexts'\?\)"
    with pytest.raises(ValueError, match=expected):
        if mode == "single":
            gym.make("prefzoo/PrefBandit-v0", n_contxts=3)
        else:
            gym.make_vec("prefzoo/PrefBandit-v0", num_envs=2,
                         vectorization_mode="vector_entry_point", n_contxts=3)


def test_unknown_reward_mode_and_family():
    with pytest.raises(ValueError, match=r"unknown reward_mode 'winprob'.*'win_prob'"):
        gym.make("prefzoo/PrefBandit-v0", reward_mode="winprob")
    with pytest.raises(ValueError, match=r"reward_mode 'x'; expected one of \('comparison'"):
        gym.make_vec("prefzoo/PrefBandit-v0", num_envs=2, vectorization_mode="vector_entry_point",
                     reward_mode="x")
    with pytest.raises(ValueError, match=r"unknown family 'cylic'"):
        gym.make("prefzoo/PrefBandit-v0", family="cylic")


def test_a_game_class_without_its_declarations_is_refused_at_creation_naming_what_is_missing():
    from prefzoo.envs.oracle import PreferenceOracle

    with pytest.raises(TypeError, match=r"game class Forgetful must declare payoff, exact \(class attributes; "
                                        r"allowed values: payoff in \('preference', 'answer_utility'\), exact in"):
        class Forgetful(PreferenceOracle):
            responses, listed = "indexed", True
    with pytest.raises(TypeError, match=r"Wrong declares exact=1; expected one of \(False, True\)"):
        class Wrong(PreferenceOracle):
            responses, payoff, exact, listed = "indexed", "preference", 1, True  # 1 is not a bool

    class Inherits(prefzoo.PreferenceGame):  # a subclass keeps its parent's declarations
        pass

    assert prefzoo.envs.oracle.declarations(Inherits) == prefzoo.envs.oracle.declarations(prefzoo.PreferenceGame)


@pytest.mark.parametrize("env_id", prefzoo.ENV_IDS)
def test_declarations_are_read_from_the_registry_without_building_the_game(env_id):
    from prefzoo.envs.oracle import declarations

    if "/LMGame" in env_id:
        pytest.importorskip("transformers")
    cls = prefzoo.envs.game_class(env_id)
    game = gym.make(env_id).unwrapped.game
    assert declarations(cls) == declarations(game) and cls.headline == game.headline


def test_prefzoo_list_shows_each_games_declarations(capsys):
    from prefzoo.zoo import cli

    cli.main(["list"])
    out = capsys.readouterr().out
    assert "prefzoo/AnswerGame-v0" in out and "payoff=answer_utility" in out and "headline=" in out
    line = next(line for line in out.splitlines() if "prefzoo/PrefBandit-Cyclic-v0" in line)
    assert "responses=indexed" in line and "exact=True" in line and "headline=game/exploitability" in line
