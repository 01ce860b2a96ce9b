"""The zoo on a real (built-in, Hugging Face) language model: LMPolicy's log-probabilities
against an independent per-token loop, WIND and online DPO raising the estimated win rate
against π_ref under VADER (SPPO and iterative BoN in their sampled forms too, and MPO, INPO,
EGPO, DNO, XPO and SPO), GRPO's query count, and a run that stops at the oracle's cap, resumes
from its checkpoint, ends where an uninterrupted run ends and leaves a Hugging Face folder."""

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the optional [lm] extra is not installed")
pytest.importorskip("vaderSentiment", reason="the optional [lm] extra is not installed")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

import prefzoo  # noqa: E402
from prefzoo.algorithms.lm_policy import LMPolicy  # noqa: E402
from prefzoo.envs import metrics  # noqa: E402
from prefzoo.envs.lm.env import LMGameEnv  # noqa: E402
from prefzoo.envs.lm.game import LMGame  # noqa: E402
from prefzoo.zoo import config, rundir, runner  # noqa: E402
from prefzoo.zoo.config import RunConfig  # noqa: E402

PROMPTS = [f"the {n} was" for n in ("movie", "book", "phone", "pizza", "hotel", "coffee", "camera", "song")]


@pytest.fixture(scope="module")
def game():
    return LMGame(prompts=PROMPTS, max_new_tokens=8, temperature=0.9)


def test_lm_policy_log_prob_matches_a_per_token_loop(game):
    policy = LMPolicy(game, torch.device("cpu"))
    x = np.array([0, 3, 5, 3])
    y = policy.sample(x, np.random.default_rng(0))
    with torch.no_grad():
        batched = policy.log_prob(torch.as_tensor(x), torch.as_tensor(y)).numpy()
        ref = policy.ref_log_prob(torch.as_tensor(x), torch.as_tensor(y)).numpy()
    model = AutoModelForCausalLM.from_pretrained(game.model_path)
    for i in range(len(x)):  # no padding, one token at a time, tempered softmax
        ids = list(game.prompt_ids[x[i]])
        total = 0.0
        for token in game.store.tokens[y[i]]:
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0, -1].double() / 0.9
            total += torch.log_softmax(logits, -1)[token].item()
            ids.append(int(token))
        np.testing.assert_allclose(batched[i], total, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(batched, ref)  # π_θ = π_ref at init
    np.testing.assert_array_equal(y, policy.sample(x, np.random.default_rng(0)))  # same seed, same responses
    with pytest.raises(ValueError, match="an LM policy has no table"):
        policy.probs()


def test_tabular_policy_on_an_lm_game_is_refused(game):
    env = LMGameEnv(game=game)
    with pytest.raises(ValueError, match="policy='hf'"):
        prefzoo.make_algo("wind", env, mode="sample", policy="tabular")


AT_MOST = "at most"  # every distinct pair of a group compared once: identical responses are not queried


@pytest.mark.parametrize("algo, hyperparams, comparisons", [
    ("wind", {"mode": "sample", "beta": 0.1, "eta": 1.0, "lr": 2e-3, "grad_steps": 2}, 1),
    ("online_dpo", {"beta": 0.1, "lr": 2e-3, "grad_steps": 1}, 1),
    ("sppo", {"mode": "sample", "eta": 1.0, "k": 3, "lr": 2e-3, "grad_steps": 2}, 3),  # last iterate
    ("iterative_bon", {"mode": "sample", "n": 4, "mixing": 0.2, "lr": 2e-3, "grad_steps": 2}, 3),  # sampled normalizer
    ("mpo", {"mode": "sample", "beta": 0.1, "eta": 1.0, "magnet_every": 4, "lr": 2e-3, "grad_steps": 2}, 1),
    ("inpo", {"mode": "sample", "beta": 0.1, "eta": 2.0, "lr": 2e-3, "grad_steps": 3}, 1),
    ("egpo", {"mode": "sample", "beta": 0.1, "eta": 2.0, "lr": 2e-3, "grad_steps": 3}, 3),
    ("dno", {"mode": "sample", "eta": 0.5, "k": 3, "lr": 2e-3, "grad_steps": 2}, (AT_MOST, 3)),  # distinct pairs
    ("xpo", {"beta": 0.1, "alpha": 1e-3, "lr": 2e-3, "grad_steps": 2}, 1),
    ("spo", {"group_size": 4, "n_epochs": 2, "lr": 2e-3}, (AT_MOST, 6)),  # distinct pairs
])
def test_sample_algorithms_raise_the_win_rate_against_the_reference(algo, hyperparams, comparisons):
    """The built-in model and VADER (default prompts, 30 held-out prompts x 4 samples): after 12
    iterations of 32 prompts the held-out win rate exceeds ½ (π_ref's own, exactly, by symmetry)
    and the estimate at the start by 3 standard errors; the sentiment score rises; the queries are
    12 x 32 x the comparisons per prompt (at most that where groups compare distinct pairs only).
    Measured win rates from 0.455 ± 0.034: WIND 0.618, online DPO 0.610, SPPO 0.646, iterative BoN
    0.677, MPO 0.648, INPO 0.661, EGPO 0.660, DNO 0.665, XPO 0.719, SPO 0.847 (s.e. 0.018-0.037)."""
    env = gym.make("prefzoo/LMGame-v0", max_new_tokens=12)
    algorithm = prefzoo.make_algo(algo, env, seed=0, policy="hf", batch_size=32, **hyperparams)
    before = algorithm.evaluate()
    after = algorithm.learn(12, eval_freq=12).evaluate()
    win, se = after[metrics.EST_WIN_RATE_VS_REF], after[metrics.EST_WIN_RATE_VS_REF_SE]
    assert win - 0.5 > 3 * se
    assert win - before[metrics.EST_WIN_RATE_VS_REF] > 3 * np.hypot(se, before[metrics.EST_WIN_RATE_VS_REF_SE])
    assert after[metrics.LM_SCORE] > before[metrics.LM_SCORE]
    assert after[metrics.EST_KL_TO_REF] > 0
    if isinstance(comparisons, tuple):
        assert 0 < after[metrics.QUERIES] <= 12 * 32 * comparisons[1]
    else:
        assert after[metrics.QUERIES] == 12 * 32 * comparisons


def test_grpo_compares_every_distinct_pair_of_a_group(game):
    env = LMGameEnv(game=game)
    algo = prefzoo.make_algo("grpo", env, seed=0, policy="hf", batch_size=4, group_size=3, lr=1e-3, n_epochs=2)
    algo.learn(1, eval_freq=10)
    assert 0 < algo.queries <= 4 * 3 and algo.samples == 12


def test_query_cap_stops_with_a_checkpoint_that_resumes_exactly(tmp_path):
    """The cap is the run's budget: a capped run stops with a checkpoint, a resume of the same
    config stops again at once, and a resume with a higher cap ends where an uninterrupted run
    ends — the same weights, and the same oracle calls and cache hits (the cache is checkpointed)."""
    kwargs = {"prompts": PROMPTS, "max_new_tokens": 6, "eval_samples": 2}
    hp = {"mode": "sample", "policy": "hf", "batch_size": 8, "grad_steps": 1, "lr": 1e-3}
    plain = RunConfig("wind", "prefzoo/LMGame-v0", seed=0, iterations=4, eval_freq=4, save_freq=4,
                      env_kwargs=kwargs, hyperparams=hp)
    capped = RunConfig(**{**plain.to_dict(), "env_kwargs": {**kwargs, "max_queries": 30}})
    done = runner.train(plain, tmp_path / "plain", progress=False)
    stopped = runner.train(capped, tmp_path / "capped", progress=False)
    assert stopped["status"] == runner.BUDGET_SPENT and 0 < stopped["iteration"] < 4
    assert max(rundir.checkpoints(tmp_path / "capped")) == stopped["iteration"]
    again = runner.train(capped, tmp_path / "capped", resume=True, progress=False)
    assert again["status"] == runner.BUDGET_SPENT and again["iteration"] == stopped["iteration"]
    config.set_max_queries(capped, 10_000)
    resumed = runner.train(capped, tmp_path / "capped", resume=True, progress=False)
    assert resumed["status"] == "done" and resumed["iteration"] == 4, resumed
    assert rundir.load_run_config(tmp_path / "capped").env_kwargs["max_queries"] == 10_000
    a = AutoModelForCausalLM.from_pretrained(tmp_path / "plain" / "hf_policy").state_dict()
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "capped" / "hf_policy").state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in (metrics.LM_ORACLE_CALLS, metrics.LM_ORACLE_CACHE_HITS, metrics.QUERIES):
        assert resumed["metrics"][key] == done["metrics"][key] > 0, key
    with pytest.raises(config.ConfigError, match="oracle_kwargs"):  # other oracle settings are the run's own
        changed = RunConfig(**{**capped.to_dict(), "env_kwargs": {**kwargs, "oracle_kwargs": {"temperature": 2.0}}})
        runner.train(changed, tmp_path / "capped", resume=True, progress=False)


def test_lora_policy_starts_at_the_reference_trains_adapters_only_and_saves_merged(tmp_path):
    pytest.importorskip("peft", reason="the optional [lora] extra is not installed")
    game = LMGame(prompts=PROMPTS, max_new_tokens=6, lora_rank=4)
    env = LMGameEnv(game=game)
    algo = prefzoo.make_algo("online_dpo", env, seed=0, policy="hf", batch_size=8, lr=1e-2)
    trainable = {name for name, p in algo.policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    x = np.array([0, 1, 2])
    y = algo.policy.sample(x, np.random.default_rng(0))
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    with torch.no_grad():
        np.testing.assert_allclose(algo.policy.log_prob(xs, ys), algo.policy.ref_log_prob(xs, ys), atol=1e-5)
    algo.learn(2, eval_freq=10)
    with torch.no_grad():
        trained = algo.policy.log_prob(xs, ys)
        assert not torch.allclose(trained, algo.policy.ref_log_prob(xs, ys), atol=1e-4)
    written = algo.export(tmp_path)
    assert written == [tmp_path / "hf_policy", tmp_path / "generations.txt"]
    generations = (tmp_path / "generations.txt").read_text().splitlines()  # on the held-out prompts
    assert generations and all(" -> " in line for line in generations)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "hf_policy")  # plain transformers, no peft
    plain = LMPolicy(LMGame(prompts=PROMPTS, max_new_tokens=6, model=str(tmp_path / "hf_policy")), torch.device("cpu"))
    plain.game.store, plain.game.prompt_ids = game.store, game.prompt_ids  # same handles, same prompts
    with torch.no_grad():
        np.testing.assert_allclose(plain.log_prob(xs, ys), trained, atol=1e-4)
    assert type(merged).__name__ == "GPT2LMHeadModel"


def test_jbond_anchor_is_a_snapshot_sharing_the_game_and_reference(game):
    algo = prefzoo.make_algo("jbond", LMGameEnv(game=game), seed=0, policy="hf", batch_size=4, lr=1e-3,
                             grad_steps=1)
    assert algo.anchor.game is game and algo.anchor._ref.value is algo.policy._ref.value
    assert algo.anchor.model is not algo.policy.model
    algo.learn(1, eval_freq=10)
    assert algo.queries == 3 * 4 and algo.samples == 3 * 4


def test_token_mixture_sampler_matches_an_uncached_per_token_loop(game):
    """LMPolicy.sample_mixture (both models with KV caches, left-padded batch) draws exactly the
    tokens of a plain loop: full forward passes on the unpadded prefix, mixed log-probabilities,
    the same inverse-CDF uniforms."""
    policy = LMPolicy(game, torch.device("cpu"))
    torch.manual_seed(0)
    with torch.no_grad():
        for p in policy.model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # π_θ ≠ π_ref, so the mixture is not either model
    x, w = np.array([0, 5, 2, 5]), 0.3
    handles = policy.sample_mixture(x, np.random.default_rng(7), w)
    uniforms = np.random.default_rng(7).random((len(x), game.max_new_tokens))
    eos = game.tokenizer.eos_token_id
    for i in range(len(x)):
        ids, out = list(game.prompt_ids[x[i]]), []
        for t in range(game.max_new_tokens):
            with torch.no_grad():
                lp = torch.log_softmax(policy.model(torch.tensor([ids])).logits[0, -1] / game.temperature, -1)
                lr = torch.log_softmax(policy._ref.value(torch.tensor([ids])).logits[0, -1] / game.temperature, -1)
            cdf = torch.softmax((1 - w) * lp + w * lr, -1).cumsum(-1).numpy()
            token = min(int((np.float32(uniforms[i, t]) * cdf[-1] > cdf).sum()), len(cdf) - 1)
            out.append(token)
            ids.append(token)
            if token == eos:
                break
        assert game.store.tokens[handles[i]].tolist() == out


def test_nash_md_token_mixture_trains_on_an_lm_game(game):
    algo = prefzoo.make_algo("nash_md", LMGameEnv(game=game), seed=0, mode="sample", mixture="token", policy="hf",
                             batch_size=4, lr=1e-3, grad_steps=1)
    algo.learn(1, eval_freq=10)
    assert algo.queries == 4 and algo.samples == 8
    with pytest.raises(ValueError, match="reads every response's probability"):
        prefzoo.make_algo("nash_md", LMGameEnv(game=game), mode="sample", policy="hf")  # the sequence mixture


def test_cli_max_calls_caps_a_run_and_a_resume_raises_it(tmp_path, capsys, monkeypatch):
    from prefzoo.zoo import cli

    monkeypatch.chdir(tmp_path)
    hp = ["--hp", f"env_kwargs={{prompts: {PROMPTS}, max_new_tokens: 6, eval_samples: 2}}", "--hp", "policy=hf",
          "--hp", "mode=sample", "--hp", "batch_size=8", "--hp", "grad_steps=1"]
    with pytest.raises(SystemExit) as stopped:
        cli.main(["train", "--algo", "wind", "--env", "prefzoo/LMGame-v0", "--iterations", "3", "--max-calls", "30",
                  "--no-progress", *hp])
    assert stopped.value.code == cli.EXIT_BUDGET_SPENT
    assert f"{runner.BUDGET_SPENT} at iteration 1" in capsys.readouterr().out
    run = tmp_path / "logs" / "wind" / "prefzoo-LMGame-v0_1"
    cli.main(["train", "--resume", str(run), "--max-calls", "1000", "--no-progress"])
    assert "done at iteration 3" in capsys.readouterr().out
    assert rundir.load_run_config(run).env_kwargs["max_queries"] == 1000


def test_tournament_of_lm_runs_estimates_their_win_rates_from_checkpoints(tmp_path):
    """Two WIND runs (12 and 1 iterations) and π_ref: the trained run beats π_ref by 3 s.e., and its
    entry agrees (4 s.e.) with the win rate its own run logged on other samples — the tournament
    restored the trained weights, not π_ref's; entries are antisymmetric about ½."""
    from prefzoo.zoo import tournament

    hp = {"mode": "sample", "policy": "hf", "batch_size": 32, "beta": 0.1, "eta": 1.0, "lr": 2e-3, "grad_steps": 2}
    runs = []
    for iterations, budget in ((12, {}), (1, {"max_queries": 10**6})):  # a budget is not the game
        cfg = RunConfig("wind", "prefzoo/LMGame-v0", seed=0, iterations=iterations, eval_freq=iterations,
                        save_freq=iterations, env_kwargs={"max_new_tokens": 12, **budget}, hyperparams=hp)
        runs.append(tmp_path / f"wind{iterations}")
        logged = runner.train(cfg, runs[-1], progress=False)["metrics"]
    trained = rundir.progress_arrays(runs[0])
    result = tournament.tournament([str(r) for r in runs], tmp_path / "tour", verbose=False)
    assert result["names"] == ["wind/s0@12", "wind/s0@1", "π_ref"]
    matrix = result["matrix"]
    se = np.loadtxt(tmp_path / "tour" / "tournament_se.csv", delimiter=",", skiprows=1, usecols=(1, 2, 3))
    np.testing.assert_allclose(matrix + matrix.T, 1.0)
    assert matrix[0, 2] - 0.5 > 3 * se[0, 2]
    own, own_se = trained[metrics.EST_WIN_RATE_VS_REF][-1], trained[metrics.EST_WIN_RATE_VS_REF_SE][-1]
    assert abs(matrix[0, 2] - own) < 4 * np.hypot(se[0, 2], own_se), (matrix[0, 2], own)
    assert logged[metrics.EST_WIN_RATE_VS_REF] < own  # one iteration moved less than twelve
    assert "± " in (tmp_path / "tour" / "tournament.md").read_text()
    other = RunConfig("wind", "prefzoo/LMGame-v0", seed=0, iterations=1, eval_freq=1, save_freq=1,
                      env_kwargs={"max_new_tokens": 6}, hyperparams=hp)
    runner.train(other, tmp_path / "other", progress=False)
    with pytest.raises(config.ConfigError, match="different games"):
        tournament.tournament([str(runs[0]), str(tmp_path / "other")], tmp_path / "tour2", verbose=False)


def test_compare_on_an_lm_game_stops_at_the_budget_and_leaves_hf_policies(tmp_path):
    """``compare`` over WIND and iterative BoN on LMGame (2 local workers): each run stops at its
    first evaluation past 100 queries, the table holds the estimated LM metrics at the budget
    (read from the runs' own progress.csv), and every run leaves a loadable Hugging Face folder."""
    from prefzoo.zoo import compare

    overrides = {"env_kwargs": {"prompts": PROMPTS, "max_new_tokens": 6, "eval_samples": 2}, "batch_size": 8,
                 "mode": "sample", "policy": "hf", "grad_steps": 1}
    result = compare.compare(["wind", "iterative_bon"], "prefzoo/LMGame-v0", [0], tmp_path, workers=2, budget=100,
                             overrides=overrides, eval_freq=2, progress=False, device="cpu")
    for run_dir in result["run_dirs"]:
        queries = rundir.progress_arrays(run_dir)[metrics.QUERIES]
        assert queries[-1] >= 100 > queries[-2]
        AutoModelForCausalLM.from_pretrained(f"{run_dir}/hf_policy")
    assert [p.name for p in result["plots"]] == ["vs_queries.png", "vs_wall_time.png"]  # lm/ curves
    rows = {(r["algo"], r["metric"], r["queries"]): r["mean"] for r in result["rows"]}
    for algo, run_dir in zip(("wind", "iterative_bon"), result["run_dirs"]):
        arrays = rundir.progress_arrays(run_dir)
        last = np.flatnonzero(arrays[metrics.QUERIES] <= 100)[-1]
        assert rows[algo, metrics.EST_WIN_RATE_VS_REF, 100] == pytest.approx(arrays[metrics.EST_WIN_RATE_VS_REF][last])


def test_tune_on_the_lm_game_optimizes_its_headline_and_writes_the_config(tmp_path):
    """The LM game has no exact services: ``tune`` optimizes the distance of the estimated win rate
    vs π_ref to 1 (the game's headline) and writes the tuned entry."""
    from prefzoo.zoo import tune

    pytest.importorskip("optuna")
    fixed = {"env_kwargs": {"prompts": PROMPTS, "max_new_tokens": 6, "eval_samples": 2}, "policy": "hf",
             "batch_size": 8, "grad_steps": 1}
    best = tune.tune("wind", "prefzoo/LMGame-v0", tmp_path, trials=2, budget=16, n_seeds=1, overrides=fixed)
    assert best["objective"] == "|est/win_rate_vs_ref - 1|" and best["trials"] == 2
    entry = config.load_yaml(tmp_path / "wind.yml")["prefzoo/LMGame-v0"]
    assert entry.items() >= best["best_params"].items() and best["best_params"]
    assert 0 <= best["best_value"] <= 1


def test_a_budget_spent_by_an_evaluation_stops_cleanly_and_the_resume_logs_it_first(tmp_path):
    """A budget below the first evaluation's cost: a clean stop at iteration 0 (no traceback, nothing
    paid for the refused batch, no row logged); the resume with a larger budget logs iteration 0
    first and ends where an uninterrupted run ends (rows, metrics, oracle calls)."""
    kwargs = {"prompts": PROMPTS, "max_new_tokens": 6, "eval_samples": 2}
    hp = {"mode": "sample", "policy": "hf", "batch_size": 8, "grad_steps": 1, "lr": 1e-3}
    plain = RunConfig("wind", "prefzoo/LMGame-v0", seed=0, iterations=2, eval_freq=1, save_freq=2,
                      env_kwargs=kwargs, hyperparams=hp)
    capped = RunConfig(**{**plain.to_dict(), "env_kwargs": {**kwargs, "max_queries": 2}})
    runner.train(plain, tmp_path / "plain", progress=False)
    stopped = runner.train(capped, tmp_path / "capped", progress=False)
    assert stopped["status"] == runner.BUDGET_SPENT and stopped["iteration"] == 0
    assert rundir.read_progress(tmp_path / "capped")[1] == []  # no row for an evaluation that did not happen
    config.set_max_queries(capped, 10_000)
    resumed = runner.train(capped, tmp_path / "capped", resume=True, progress=False)
    assert resumed["status"] == "done"
    a, b = rundir.progress_arrays(tmp_path / "plain"), rundir.progress_arrays(tmp_path / "capped")
    np.testing.assert_array_equal(b[metrics.ITERATIONS], [0, 1, 2])
    for key in (metrics.EST_WIN_RATE_VS_REF, metrics.LM_ORACLE_CALLS, metrics.QUERIES):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_failing_judge_stops_with_a_checkpoint_and_the_resume_pays_no_answer_twice(tmp_path, monkeypatch, capsys):
    """VADER raises ("rate limited") from its 40th text on: `train` exits 4 with a one-line error naming
    the score function and the text, the run is checkpointed at the failure with the answers paid so
    far, and the resume (the judge answering again) ends where an uninterrupted run ends, with the
    same oracle calls (nothing paid twice)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    from prefzoo.zoo import cli

    hp = ["--hp", f"env_kwargs={{prompts: {PROMPTS}, max_new_tokens: 6, eval_samples: 2}}", "--hp", "policy=hf",
          "--hp", "mode=sample", "--hp", "batch_size=8", "--hp", "grad_steps=1", "--hp", "eval_freq=1"]
    train = ["train", "--algo", "wind", "--env", "prefzoo/LMGame-v0", "--iterations", "3", "--no-progress", *hp]
    monkeypatch.chdir(tmp_path)
    cli.main([*train, "--log-folder", "plain"])
    real, calls = SentimentIntensityAnalyzer.polarity_scores, []

    def flaky(self, text):
        calls.append(text)
        if len(calls) >= 40:
            raise RuntimeError("rate limited")
        return real(self, text)

    monkeypatch.setattr(SentimentIntensityAnalyzer, "polarity_scores", flaky)
    with pytest.raises(SystemExit) as stopped:
        cli.main([*train, "--log-folder", "flaky"])
    assert stopped.value.code == cli.EXIT_JUDGE_FAILED
    err = capsys.readouterr().err
    assert "stopping: score function" in err and "rate limited" in err and "Traceback" not in err
    run = tmp_path / "flaky" / "wind" / "prefzoo-LMGame-v0_1"
    assert rundir.checkpoints(run) and not rundir.finished(run)
    monkeypatch.setattr(SentimentIntensityAnalyzer, "polarity_scores", real)
    cli.main(["train", "--resume", str(run), "--no-progress"])
    a, b = rundir.progress_arrays(tmp_path / "plain" / "wind" / "prefzoo-LMGame-v0_1"), rundir.progress_arrays(run)
    np.testing.assert_array_equal(b[metrics.ITERATIONS], [0, 1, 2, 3])
    for key in (metrics.EST_WIN_RATE_VS_REF, metrics.LM_ORACLE_CALLS, metrics.QUERIES):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_checkpoint_whose_cached_answers_are_nan_or_mistyped_is_refused_on_resume(tmp_path, capsys, monkeypatch):
    """A data-only checkpoint that passes the format check but holds a NaN cached score (served and
    logged for the rest of the run if loaded) or a counter of the wrong type: `train --resume` exits 1
    with one line naming the problem, no traceback."""
    from prefzoo.algorithms.checkpoint import read_checkpoint, write_checkpoint
    from prefzoo.zoo import cli

    monkeypatch.chdir(tmp_path)
    cli.main(["train", "--algo", "wind", "--env", "prefzoo/LMGame-v0", "--iterations", "2", "--save-freq", "1",
              "--no-progress", "--hp", f"env_kwargs={{prompts: {PROMPTS}, max_new_tokens: 6, eval_samples: 2}}",
              "--hp", "policy=hf", "--hp", "mode=sample", "--hp", "batch_size=8", "--hp", "grad_steps=1"])
    run = tmp_path / "logs" / "wind" / "prefzoo-LMGame-v0_1"
    path = rundir.checkpoint_path(run, 2)
    good = read_checkpoint(path)
    for damage, message in ((lambda s: s["game"]["oracle"]["cache"][0].__setitem__(-1, float("nan")),
                             "cached answers hold"),
                            (lambda s: s["game"]["oracle"].__setitem__("calls", "many"), "calls must be an integer")):
        state = read_checkpoint(path)
        damage(state["state"])
        write_checkpoint(path, {key: value for key, value in state.items() if key != "format"})
        with pytest.raises(SystemExit) as failed:
            cli.main(["train", "--resume", str(run), "--iterations", "3", "--no-progress"])
        err = capsys.readouterr().err
        assert failed.value.code == 1 and message in err and "does not fit WIND on LMGame" in err
        assert "Traceback" not in err
    write_checkpoint(path, {key: value for key, value in good.items() if key != "format"})


def test_token_kl_matches_a_per_position_loop_over_both_models(game):
    """Σ_t KL(π_θ(·|x, y_<t) ‖ π_ref(·|x, y_<t)) (est/kl_to_ref's estimator), batched and padded, against
    a loop over positions with each model on the unpadded prefix; 0 at init."""
    policy = LMPolicy(game, torch.device("cpu"))
    x = np.array([1, 4, 4])
    y = policy.sample(x, np.random.default_rng(3))
    xs, ys = torch.as_tensor(x), torch.as_tensor(y)
    assert policy.token_kl(xs, ys).abs().max().item() == 0.0  # π_θ = π_ref
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in policy.model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    batched = policy.token_kl(xs, ys).numpy()
    ref_model = AutoModelForCausalLM.from_pretrained(game.model_path)
    for i in range(len(x)):
        ids, total = list(game.prompt_ids[x[i]]), 0.0
        for token in game.store.tokens[y[i]]:
            with torch.no_grad():
                log_p, log_r = (torch.log_softmax(m(torch.tensor([ids])).logits[0, -1].double() / 0.9, -1)
                                for m in (policy.model, ref_model))
            total += float((log_p.exp() * (log_p - log_r)).sum())
            ids.append(int(token))
        np.testing.assert_allclose(batched[i], total, rtol=1e-4, atol=1e-5)
    assert batched.min() > 0
