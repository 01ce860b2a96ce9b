"""LMGame: the built-in model's save/load round trip and its weights across thread counts, the text
oracles (reward model re-tokenized, VADER, pairwise judge, a plain callable), counting, caching, the
game's budget across a resume, the clustered s.e. against the spread of fresh evaluations, and bad
inputs.

Everything runs on CPU and offline: the built-in model is made in code (cached per machine under
$PREFZOO_CACHE), the reward model is a tiny GPT-2 built from a config with its own tokenizer.
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the optional [lm] extra is not installed")
pytest.importorskip("vaderSentiment", reason="the optional [lm] extra is not installed")

import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from prefzoo.envs import judges, metrics  # noqa: E402
from prefzoo.envs.lm import builtin  # noqa: E402
from prefzoo.envs.lm.data import read_rows  # noqa: E402
from prefzoo.envs.lm.game import LMGame  # noqa: E402
from prefzoo.envs.lm.hf import RewardModelOracle  # noqa: E402
from prefzoo.envs.lm.sampling import SamplingDistribution  # noqa: E402
from prefzoo.envs.oracle import BudgetExhausted  # noqa: E402

PROMPTS = [f"the {n} was" for n in ("movie", "book", "phone", "pizza", "hotel", "coffee", "camera", "song")]


@pytest.fixture(scope="module")
def game():
    return LMGame(prompts=PROMPTS, seed=0, max_new_tokens=8)


def test_builtin_model_round_trips_through_save_and_from_pretrained(tmp_path):
    path = builtin.builtin_model_path()
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.pad_token == builtin.PAD and tokenizer.eos_token == builtin.BOS_EOS
    assert tokenizer.get_vocab() == {word: i for i, word in enumerate(builtin.VOCABULARY)}
    sentence = "the movie was really great , i loved it !"
    ids = tokenizer(sentence)["input_ids"]
    assert tokenizer.unk_token_id not in ids and tokenizer.decode(ids) == sentence
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    batch = torch.tensor([[tokenizer.bos_token_id, *ids]])
    with torch.no_grad():
        assert torch.equal(model(batch).logits, again(batch).logits)
    assert AutoTokenizer.from_pretrained(tmp_path)(sentence)["input_ids"] == ids
    # pre-trained on the review corpus: a sentiment word after "the movie was very" beats a noun
    probs = torch.softmax(model(torch.tensor([[tokenizer.bos_token_id,
                                               *tokenizer("the movie was very")["input_ids"]]])).logits[0, -1], -1)
    vocab = tokenizer.get_vocab()
    sentiment = sum(probs[vocab[w]] for w in builtin.POSITIVE + builtin.NEGATIVE)
    assert sentiment > 0.8


# builds the built-in model (20 pre-training steps) for each seed in argv[2:] in a process with
# argv[1] torch threads; prints the seed, the sha256 of the state dict (keys in order) and the
# thread count after the build
BUILD_AND_HASH = """
import hashlib, sys, torch
torch.set_num_threads(int(sys.argv[1]))
from prefzoo.envs.lm import builtin
tokenizer = builtin.build_tokenizer()
for seed in map(int, sys.argv[2:]):
    state = builtin.build_model(tokenizer, steps=20, seed=seed).state_dict()
    digest = hashlib.sha256()
    for key, tensor in state.items():
        digest.update(key.encode())
        digest.update(tensor.contiguous().numpy().tobytes())
    print(seed, digest.hexdigest(), torch.get_num_threads())
"""


def test_builtin_model_weights_do_not_depend_on_the_thread_count():
    """Pre-training runs on one thread: built with 1 or 2 torch threads, the weights are the same
    bytes (before builtin-lm-v2 they were not), another seed gives others, and the caller's thread
    count is restored."""
    runs = {}
    for threads, seeds in ((1, ["0", "1"]), (2, ["0"])):  # the two processes run side by side
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        runs[threads] = subprocess.Popen([sys.executable, "-c", BUILD_AND_HASH, str(threads), *seeds],
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    hashes = {}
    for threads, run in runs.items():
        out, err = run.communicate(timeout=300)
        assert run.returncode == 0, err
        for line in out.splitlines():
            seed, digest, after = line.split()
            assert int(after) == threads
            hashes[threads, int(seed)] = digest
    assert len(hashes) == 3
    assert hashes[1, 0] == hashes[2, 0]
    assert hashes[1, 1] != hashes[1, 0]


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    """A tiny GPT-2 reward model with its own word-level tokenizer (ids in reverse order of the
    policy's, no pad token), saved with save_pretrained."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    words = list(reversed(builtin.VOCABULARY))
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=builtin.UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, eos_token=builtin.BOS_EOS, unk_token=builtin.UNK)
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(words), n_positions=64, n_embd=16, n_layer=1,
                                                     n_head=2, num_labels=1))
    path = tmp_path_factory.mktemp("reward_model")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_reward_model_oracle_retokenizes_with_its_own_tokenizer(reward_model_dir, game):
    from transformers import AutoModelForSequenceClassification

    oracle = RewardModelOracle(str(reward_model_dir), temperature=0.5, batch_size=2)
    rm = AutoModelForSequenceClassification.from_pretrained(reward_model_dir)
    rm_tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    prompts = ["the movie was", "the book was", "the movie was"]
    responses = ["great !", "really awful , i hated it .", "fine"]

    def direct(text):  # one text at a time, no padding, the reward model's own ids
        with torch.no_grad():
            return rm(torch.tensor([rm_tokenizer(text)["input_ids"]])).logits[0, 0].item()

    expected = [direct(f"{p} {r}") for p, r in zip(prompts, responses, strict=True)]
    np.testing.assert_allclose(oracle.score(prompts, responses), expected, rtol=1e-5, atol=1e-6)
    # the policy's ids of the same text are different ids: feeding them would be a different score
    policy_ids = game.tokenizer("the movie was great !")["input_ids"]
    assert policy_ids != rm_tokenizer("the movie was great !")["input_ids"]
    p = oracle.probability(prompts[:2], responses[:2], responses[2:] + responses[:1])
    r = {(pr, rs): s for pr, rs, s in zip(prompts, responses, expected, strict=True)}
    r["the book was", "great !"] = direct("the book was great !")
    want = [1 / (1 + math.exp(-(expected[0] - r["the movie was", "fine"]) / 0.5)),
            1 / (1 + math.exp(-(expected[1] - r["the book was", "great !"]) / 0.5))]
    np.testing.assert_allclose(p, want, rtol=1e-6)
    assert oracle.calls == 4  # 3 scored texts + "the book was great !"; the rest came from the cache


def test_lm_game_with_the_reward_model_oracle(reward_model_dir):
    game = LMGame(prompts=PROMPTS, oracle="reward_model", oracle_kwargs={"model": str(reward_model_dir)},
                  max_new_tokens=6)
    x = game.sample_contexts(6, np.random.default_rng(0))
    y, y2 = game.sample_ref(x, np.random.default_rng(1)), game.sample_ref(x, np.random.default_rng(2))
    p = game.prob(x, y, y2)
    assert p.shape == (6,) and np.all((p > 0) & (p < 1))
    np.testing.assert_allclose(p + game.prob(x, y2, y), 1.0, atol=1e-12)


def test_vader_score_oracle_counts_caches_and_draws_bernoulli_outcomes(game):
    oracle = game.oracle
    x = np.zeros(2, dtype=np.int64)
    y, y2 = game.store.add([np.array(game.tokenizer("great !")["input_ids"]),
                            np.array(game.tokenizer("awful .")["input_ids"])])
    calls, hits = oracle.calls, oracle.cache_hits
    p1 = game.prob(x[:1], y[None], y2[None])
    p2 = game.prob(x[:1], y[None], y2[None])
    assert p1 == p2 and p1 > 0.9
    assert oracle.calls - calls <= 2 and oracle.cache_hits - hits >= 2
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    s = SentimentIntensityAnalyzer()
    want = 1 / (1 + math.exp(-(s.polarity_scores("great !")["compound"] - s.polarity_scores("awful .")["compound"])
                             / 0.25))
    np.testing.assert_allclose(p1, want, rtol=1e-12)
    queries = game.queries
    wins = game.compare(np.zeros(4000, dtype=np.int64), np.full(4000, y2), np.full(4000, y), np.random.default_rng(0))
    assert game.queries - queries == 4000
    q = 1 - want  # Monte Carlo against the exact Bernoulli mean, 4 standard deviations
    assert abs(wins.mean() - q) < 4 * math.sqrt(q * (1 - q) / 4000)


def test_pairwise_judge_cache_symmetry_and_one_charge_per_batch():
    asked, charges = [], []

    def longer_wins(prompt, a, b):
        asked.append((prompt, a, b))
        return 0.5 + 0.4 * np.sign(len(a) - len(b))

    judge = judges.PairwiseJudgeOracle(longer_wins)
    np.testing.assert_allclose(judge.probability(["q"], ["ccc"], ["b"]), [0.9])  # standalone: counts only
    assert judge.calls == 1 and judge.charge is None
    judge.charge = charges.append
    p = judge.probability(["q"] * 5, ["aa", "b", "aa", "cc", "b"], ["b", "aa", "aa", "cc", "ccc"])
    np.testing.assert_allclose(p, [0.9, 0.1, 0.5, 0.5, 0.1])  # reversed pairs from the cache; ties free
    assert charges == [1] and judge.calls == 2 and judge.cache_hits == 2 and len(asked) == 2


def test_batched_score_oracle_scores_each_new_text_once():
    seen = []

    def lengths(texts):
        seen.append(list(texts))
        return [len(t) for t in texts]

    oracle = judges.ScoreOracle(lengths, temperature=2.0, batched=True)
    np.testing.assert_allclose(oracle.probability(["p", "p"], ["aaa", "b"], ["b", "aaa"]),
                               [1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(1.0))])
    assert seen == [["aaa", "b"]] and oracle.calls == 2 and oracle.cache_hits == 2  # deduplicated, one batch
    with pytest.raises(judges.JudgeError, match="'short' returned 1 scores for 2 texts"):
        judges.ScoreOracle(lambda texts: [0.0], batched=True, name="short").score(["p", "p"], ["a", "b"])


def judge_game(judge, **kwargs):
    return LMGame(prompts=PROMPTS, oracle=judge, max_new_tokens=8, **kwargs)


def handles(game, *texts):
    return game.store.add([np.array(game.tokenizer(text)["input_ids"]) for text in texts])


def test_lm_game_takes_a_plain_callable_as_its_judge_counted_and_charged():
    answer, asked = {"value": 0.8}, []

    def judge(prompt, a, b):
        asked.append((prompt, a, b))
        return answer["value"]

    game = judge_game(judge)
    assert isinstance(game.oracle, judges.PairwiseJudgeOracle) and game.oracle.judge is judge
    y = handles(game, "great !", "awful .", "nice .")
    x = np.zeros(2, dtype=np.int64)
    np.testing.assert_allclose(game.prob(x, y[:2], y[1:]), [0.8, 0.8])
    assert asked == [(game.prompts[0], "great !", "awful ."), (game.prompts[0], "awful .", "nice .")]
    assert game.oracle.calls == game.spent == 2
    np.testing.assert_allclose(game.prob(x[:1], y[1:2], y[:1]), [0.2])  # the reversed pair: cached, free
    answer["value"] = "b"  # a winner; a new prompt asks the judge again
    assert not game.compare(x[:1] + 1, y[:1], y[1:2], np.random.default_rng(0))[0]
    answer["value"] = "a"
    assert game.compare(x[:1] + 2, y[:1], y[1:2], np.random.default_rng(0))[0]
    assert game.oracle.calls == game.spent == 4 and game.queries == 2 and len(asked) == 4
    gym = pytest.importorskip("gymnasium")
    assert gym.make("prefzoo/LMGame-v0", prompts=PROMPTS, oracle=judge).unwrapped.game.oracle.judge is judge


def test_budget_stops_before_the_batch_that_would_pass_it_and_counts_the_whole_run():
    asked = []

    def longer_wins(prompt, a, b):
        asked.append((prompt, a, b))
        return 0.5 + 0.4 * np.sign(len(a) - len(b))

    texts = ("good", "very good", "so very good", "bad")
    game = judge_game(longer_wins, max_queries=2)
    y, x = handles(game, *texts), np.zeros(2, dtype=np.int64)
    game.prob(x[:1], y[:1], y[1:2])
    game.prob(x[:1], y[1:2], y[:1])  # from the cache: free
    assert game.spent == 1 and game.oracle.cache_hits == 1
    with pytest.raises(BudgetExhausted, match="spent 1 of its budget of 2"):  # 2 new pairs: 1 + 2 > 2
        game.prob(x, y[[0, 1]], y[[2, 3]])
    assert game.spent == game.oracle.calls == len(asked) == 1 and game.oracle.cache_hits == 1  # nothing asked
    game.prob(x[:1], y[2:3], y[:1])  # reaches the budget exactly
    with pytest.raises(BudgetExhausted, match="spent 2 of its budget of 2"):
        game.compare(x[:1], y[3:4], y[:1])
    assert game.spent == len(asked) == 2 and game.queries == 0
    state = json.loads(json.dumps(game.counter_state()))  # plain data, as a checkpoint holds it
    resumed = judge_game(longer_wins, max_queries=4)  # a resumed run: the checkpoint's counters, a higher budget
    resumed.load_counter_state(state)
    y = handles(resumed, *texts)
    assert resumed.spent == 2 and resumed.max_queries == 4
    np.testing.assert_allclose(resumed.prob(x[:1], y[1:2], y[:1]), [0.9])  # from the restored cache
    resumed.prob(x, y[[3, 3]], y[[0, 1]])
    assert resumed.spent == resumed.oracle.calls == 4 and len(asked) == 4
    with pytest.raises(BudgetExhausted, match="spent 4 of its budget of 4"):  # the budget counts the whole run
        resumed.prob(x[:1], y[3:4], y[2:3])


@pytest.mark.parametrize("kwargs, error, match", [
    ({"max_queries": True}, TypeError, "max_queries must be an integer >= 0"),
    ({"max_queries": float("inf")}, ValueError, "max_queries must be an integer >= 0"),
    ({"max_queries": -1}, ValueError, "max_queries"),
    ({"eval_samples": True}, TypeError, "eval_samples must be an integer >= 1"),
    ({"max_new_tokens": 0}, ValueError, "max_new_tokens must be an integer >= 1"),
    ({"lora_rank": 1.5}, ValueError, "lora_rank must be an integer >= 0"),
    ({"temperature": float("inf")}, ValueError, "temperature must be a finite number > 0"),
    ({"top_p": 0}, ValueError, r"top_p must be a finite number in \(0, 1\]"),
    ({"eval_fraction": 1}, ValueError, r"eval_fraction must be a finite number in \(0, 1\)"),
    ({"oracle": "vadr"}, ValueError, "unknown oracle 'vadr' \\(did you mean 'vader'\\?\\).*callable"),
    ({"oracle": 3}, TypeError, "oracle must be one of .*TextOracle.*callable"),
    ({"oracle_kwargs": {"temperature": 0}}, ValueError, "temperature must be a finite number > 0"),
    ({"oracle_kwargs": {"max_calls": 5}}, TypeError, "max_queries"),
    ({"oracle": judges.vader_oracle(), "oracle_kwargs": {"temperature": 1}}, ValueError, "when you build it"),
])
def test_bad_settings_name_the_argument(kwargs, error, match):
    with pytest.raises(error, match=match):
        LMGame(prompts=PROMPTS, **kwargs)


def test_bad_judge_settings_name_the_argument():
    with pytest.raises(TypeError, match="judge must be a callable"):
        judges.PairwiseJudgeOracle("gpt-4")
    with pytest.raises(TypeError, match="temperature must be a finite number > 0"):
        judges.ScoreOracle(len, temperature=True)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):  # before any model is loaded
        RewardModelOracle("no-such-model", batch_size=0)


@pytest.mark.parametrize("answer, match", [(float("nan"), "nan"), (1.5, "1.5"), ("maybe", "maybe"),
                                           (None, "None")])
def test_judge_bad_answers_name_the_judge_and_input(answer, match):
    def my_judge(prompt, a, b):
        return answer

    with pytest.raises(judges.JudgeError, match=f"my_judge.*the movie was.*{match}"):
        judges.PairwiseJudgeOracle(my_judge).probability(["the movie was"], ["good"], ["bad"])


def test_judge_and_score_function_that_raise():
    def broken(prompt, a, b):
        raise RuntimeError("rate limited")

    with pytest.raises(judges.JudgeError, match="broken.*prompt='p'.*rate limited"):
        judges.PairwiseJudgeOracle(broken).probability(["p"], ["a"], ["b"])
    with pytest.raises(judges.JudgeError, match="score function 'nan_score'.*'a'"):
        judges.ScoreOracle(lambda text: float("nan"), name="nan_score").probability(["p"], ["a"], ["b"])
    assert judges.PairwiseJudgeOracle(lambda p, a, b: "a").probability(["p"], ["x"], ["y"])[0] == 1.0
    assert judges.vader_oracle().probability(["p"], ["good"], ["good"])[0] == 0.5


def test_missing_model_path_says_nothing_is_downloaded(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match=f"{missing}.*nothing is downloaded"):
        LMGame(prompts=PROMPTS, model=str(missing))
    missing.mkdir()  # a folder, but no model in it
    with pytest.raises(FileNotFoundError, match=f"model folder '{missing}' holds no saved model or tokenizer"):
        LMGame(prompts=PROMPTS, model=str(missing))


def test_prompts_files(tmp_path):
    txt, jsonl, empty = tmp_path / "p.txt", tmp_path / "p.jsonl", tmp_path / "empty.txt"
    txt.write_text("the movie was\n\n  my phone is \n")
    jsonl.write_text('{"prompt": "the movie was"}\n{"prompt": "my phone is"}\n')
    empty.write_text("\n \n")
    assert read_rows(txt) == read_rows(jsonl) == [{"prompt": "the movie was"}, {"prompt": "my phone is"}]
    with pytest.raises(ValueError, match="holds no prompts"):
        LMGame(prompts=empty)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        LMGame(prompts=tmp_path / "missing.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1.*prompt"):
        read_rows(tmp_path / "bad.jsonl")
    game = LMGame(prompts=txt)
    assert game.n_contexts == 1 and len(game.eval_contexts) == 1


def test_long_prompt_truncated_with_a_warning_and_no_pad_token_handled(tmp_path):
    path = builtin.builtin_model_path()
    AutoModelForCausalLM.from_pretrained(path).save_pretrained(tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).pad_token is None
    long_prompt = " ".join(["the movie was very good and"] * 20)
    with pytest.warns(UserWarning, match="truncated to their last 40 tokens"):
        game = LMGame(prompts=[long_prompt, "the book was"], model=str(tmp_path), max_new_tokens=8,
                      eval_fraction=0.5)
    assert game.tokenizer.pad_token_id == game.tokenizer.eos_token_id
    assert max(len(p) for p in game.prompt_ids) == 40
    handles = game.sample_ref(np.array([0, 1, 0]), np.random.default_rng(0))  # no crash at the context limit
    assert all(len(game.store.tokens[h]) <= 8 for h in handles)


def test_evaluate_the_reference_policy(game):
    from prefzoo.algorithms.lm_policy import LMPolicy

    policy = LMPolicy(game, torch.device("cpu"))
    m = game.evaluate(policy, np.random.default_rng(0))
    assert m[metrics.EST_KL_TO_REF] == m[metrics.EST_KL_TO_REF_SE] == 0.0  # π = π_ref at init: every log-ratio is 0
    assert abs(m[metrics.EST_WIN_RATE_VS_REF] - 0.5) < 4 * m[metrics.EST_WIN_RATE_VS_REF_SE]
    assert 0 < m[metrics.LM_DISTINCT2] <= 1 and 0 < m[metrics.LM_LENGTH] <= 8
    assert -1 <= m[metrics.LM_SCORE] <= 1 and m[metrics.LM_ORACLE_CALLS] > 0
    assert m == {**game.evaluate(policy, np.random.default_rng(0)),
                 metrics.TOKENS_PER_S: m[metrics.TOKENS_PER_S],
                 metrics.LM_ORACLE_CALLS: m[metrics.LM_ORACLE_CALLS],
                 metrics.LM_ORACLE_CACHE_HITS: m[metrics.LM_ORACLE_CACHE_HITS]}  # same seed, same estimates


def test_clustered_standard_error_by_hand():
    """Three prompts with two responses each: the s.e. of the mean is the sd of the prompt means over
    √3 (equal clusters), not the sd of the six values over √6; unequal clusters follow CR1 written out."""
    from prefzoo.envs.oracle import clustered_mean_se

    values, prompts = np.array([0.2, 0.4, 0.9, 0.7, 0.4, 0.4]), np.array([0, 0, 1, 1, 2, 2])
    mean, se = clustered_mean_se(values, prompts)
    prompt_means = np.array([0.3, 0.8, 0.4])
    assert mean == pytest.approx(0.5) and se == pytest.approx(np.std(prompt_means, ddof=1) / np.sqrt(3))
    assert se > np.std(values, ddof=1) / np.sqrt(6)  # the independent-samples formula is optimistic here
    values, prompts = np.array([1.0, 2.0, 4.0, 0.0, 3.0]), np.array([5, 5, 5, 7, 9])
    mean, se = clustered_mean_se(values, prompts)
    residual_sums = [(1 - 2) + (2 - 2) + (4 - 2), 0 - 2, 3 - 2]  # Σ_{i∈g} (v_i − v̄), v̄ = 2
    assert mean == 2.0 and se == pytest.approx(np.sqrt(3 / 2 * sum(r * r for r in residual_sums)) / 5)
    assert np.isnan(clustered_mean_se(values, np.zeros(5))[1])  # one cluster: no standard error


def test_clustered_standard_error_covers_the_spread_of_fresh_evaluations(monkeypatch):
    """64 evaluations of one fixed policy, each on a game of another seed (its own 30 held-out
    prompts, 4 samples each, and its own π_ref draw) with a fresh generator: the s.d. of the 64
    win-rate estimates is within 25 % of their mean reported s.e.; the unclustered s.e. is not."""
    from prefzoo.algorithms.lm_policy import LMPolicy
    from prefzoo.envs.lm import game as game_module
    from prefzoo.envs.oracle import clustered_mean_se

    # The s.e. covers what the game's seed and the evaluation's generator draw: the held-out prompts
    # (clustered by prompt: the prompt is the unit), π_ref's responses (one fixed draw per game, so
    # evaluations of one game share it: their spread alone is smaller, 0.68 s.e. measured for π_ref)
    # and the policy's. With VADER on the built-in model the prompt hardly matters (π_ref, 30 prompts:
    # clustered s.e. 0.0325, unclustered 0.0331), so the test could not tell them apart. Here the judge's
    # taste flips with the prompt's noun and the policy leans positive: a prompt's pairs are correlated.
    nouns = list(dict.fromkeys(builtin.NOUNS))
    taste = {t.format(n=n): 1 - 2 * (i % 2) for i, n in enumerate(nouns) for t in builtin.PROMPT_TEMPLATES}
    positive, negative = set(builtin.POSITIVE), set(builtin.NEGATIVE)

    def polarity(text):
        return sum((w in positive) - (w in negative) for w in text.split())

    def judge(prompt, a, b):  # the more positive response, or on odd nouns the more negative one
        return 1 / (1 + math.exp(-2 * taste[prompt] * (polarity(a) - polarity(b))))

    pairs = []  # the (values, prompts) of each evaluation's s.e.s, the win rate's first, for the unclustered s.e.
    monkeypatch.setattr(game_module, "clustered_mean_se",
                        lambda v, c: pairs.append((v, c)) or clustered_mean_se(v, c))
    wins, ses, naive = [], [], []
    for seed in range(64):
        game = LMGame(prompts=list(taste), oracle=judge, seed=seed, eval_fraction=30 / len(taste), eval_samples=4)
        policy = LMPolicy(game, torch.device("cpu"))
        vocab = game.tokenizer.get_vocab()
        bias = torch.zeros(len(vocab))
        bias[[vocab[w] for w in builtin.POSITIVE]] = 6.0  # logits + 6 on positive words
        policy.model.lm_head.register_forward_hook(lambda module, inputs, logits, bias=bias: logits + bias)
        pairs.clear()
        m = game.evaluate(policy, np.random.default_rng(seed))
        values = np.asarray(pairs[0][0])
        assert len(values) == 120 and m[metrics.EST_WIN_RATE_VS_REF] == pytest.approx(values.mean())
        wins.append(m[metrics.EST_WIN_RATE_VS_REF])
        ses.append(m[metrics.EST_WIN_RATE_VS_REF_SE])
        naive.append(values.std(ddof=1) / np.sqrt(len(values)))
    spread = np.std(wins, ddof=1)
    # measured: s.d. 0.061, mean s.e. 0.064 (ratio 0.95; 0.94 over 96 evaluations, 0.84-0.97 in blocks
    # of 24); the unclustered s.e., 0.036 (ratio 1.69), and half the s.e. (ratio 1.90) would fail
    assert abs(spread / np.mean(ses) - 1) < 0.25
    assert abs(spread / np.mean(naive) - 1) > 0.25 and abs(spread / (np.mean(ses) / 2) - 1) > 0.25


def test_bad_prompts_and_a_missing_model_folder_are_named_and_leave_no_run_behind(tmp_path, capsys, monkeypatch):
    from prefzoo.zoo import cli

    binary = tmp_path / "prompts.txt"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ValueError, match=f"prompts file '{binary}' is not a text file"):
        LMGame(prompts=str(binary))
    with pytest.raises(ValueError, match=r"prompts must be non-empty strings or lists of chat messages .*, got ' ' "
                                         r"\(row 1 of prompts\)"):
        LMGame(prompts=["a prompt", " "])
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "no-such-model"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--algo", "wind", "--env", "prefzoo/LMGame-v0", "--no-progress", "--hp", "policy=hf",
                  "--hp", f"env_kwargs={{model: {missing}, prompts: {PROMPTS}}}"])
    assert exit_info.value.code == 2 and f"model path '{missing}' does not exist" in capsys.readouterr().err
    assert not list((tmp_path / "logs").rglob("*_1"))  # the run directory it reserved is gone


def test_a_judge_that_fails_mid_batch_keeps_the_answers_it_gave_and_refunds_the_rest():
    asked, fail = [], {"at": 3}

    def judge(prompt, a, b):
        asked.append((a, b))
        if len(asked) == fail["at"]:
            raise TimeoutError("API timeout")
        return 0.7

    oracle = judges.PairwiseJudgeOracle(judge)
    spent = []
    oracle.charge = spent.append  # what the game binds (its spend)
    pairs = (["p"] * 5, list("abcde"), list("fghij"))
    with pytest.raises(judges.JudgeError, match="judge 'judge' on prompt='p', a='c', b='h' raised TimeoutError"):
        oracle.probability(*pairs)
    assert oracle.calls == 2 and spent == [5, -3]  # 5 charged before asking, the 3 not answered refunded
    fail["at"] = 0
    np.testing.assert_allclose(oracle.probability(*pairs), 0.7)
    assert oracle.calls == 5 and spent == [5, -3, 3] and asked.count(("a", "f")) == 1  # none asked twice


def test_reward_model_keeps_the_response_when_the_prompt_fills_its_context(reward_model_dir):
    """Context 64 tokens, a 70-word prompt: the text is cut from the left (a warning), so the two
    responses still score differently, each as the model scores the last 64 tokens."""
    from transformers import AutoModelForSequenceClassification

    oracle = RewardModelOracle(str(reward_model_dir))
    rm = AutoModelForSequenceClassification.from_pretrained(reward_model_dir)
    rm_tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    prompt = " ".join(["the movie was good and"] * 14)
    with pytest.warns(UserWarning, match="cut to its context of 64 from the left"):
        scores = oracle.score([prompt, prompt], ["great !", "awful ."])
    with torch.no_grad():
        expected = [rm(torch.tensor([rm_tokenizer(f"{prompt} {r}")["input_ids"][-64:]])).logits[0, 0].item()
                    for r in ("great !", "awful .")]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert scores[0] != scores[1]


def test_reward_model_with_several_outputs_or_no_pad_token_is_refused_at_construction(reward_model_dir):
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2ForSequenceClassification, PreTrainedTokenizerFast

    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    classifier = GPT2ForSequenceClassification(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=16,
                                                          n_layer=1, n_head=2, num_labels=2))
    with pytest.raises(ValueError, match=r"has 2 outputs \(\{0: 'LABEL_0', 1: 'LABEL_1'\}\); pass label="):
        RewardModelOracle(classifier, tokenizer=tokenizer)
    positive = RewardModelOracle(classifier, tokenizer=tokenizer, label=1)
    with torch.no_grad():
        logit = classifier(torch.tensor([tokenizer("p great !")["input_ids"]])).logits[0, 1].item()
    assert positive.score(["p"], ["great !"])[0] == pytest.approx(logit, rel=1e-5)
    bare = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "b": 1})))
    with pytest.raises(ValueError, match="has no pad, EOS or UNK token"):
        RewardModelOracle(classifier, tokenizer=bare, label=1)


def test_a_model_whose_tokenizer_has_no_special_token_is_refused_at_construction(tmp_path):
    from tokenizers import Tokenizer, models
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bare = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "b": 1})))
    GPT2LMHeadModel(GPT2Config(vocab_size=2, n_positions=16, n_embd=8, n_layer=1, n_head=1)).save_pretrained(tmp_path)
    bare.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"the tokenizer of model '{tmp_path}' has no pad, EOS or UNK token"):
        LMGame(prompts=["a b", "b a"], model=str(tmp_path))


def test_a_relative_name_that_is_no_folder_is_looked_up_in_the_cache_only_when_offline(monkeypatch, tmp_path):
    """``lmx/nonexist`` looks like a hub id; with the hub unreachable it is looked up in the local cache
    only (no download retries) and the error says so at once."""
    from huggingface_hub import constants

    from prefzoo.envs.lm import hf

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    hf.hub_reachable.cache_clear()
    monkeypatch.chdir(tmp_path)
    try:
        with pytest.raises(FileNotFoundError, match="'lmx/nonexist' .* it is no local folder, and the hub is "
                                                    "unreachable and it is not in the Hugging Face cache"):
            LMGame(prompts=PROMPTS, model="lmx/nonexist")
    finally:
        hf.hub_reachable.cache_clear()


def test_generation_ignores_settings_that_would_change_the_sampled_distribution():
    """A model whose generation config sets a repetition penalty and an n-gram block is still sampled
    from the tempered softmax its log-probabilities score: the same responses as without those
    settings (which plain ``model.generate`` does not give: the control), a warning naming them, and
    the model's own config restored."""
    from prefzoo.envs.lm import hf

    model = AutoModelForCausalLM.from_pretrained(builtin.builtin_model_path())
    prompts = [np.array([1, 5, 6]), np.array([1, 7]), np.array([1, 9, 10, 11])]
    settings = {"max_new_tokens": 12, "distribution": SamplingDistribution(), "pad_id": 0, "eos_id": 1,
                "device": "cpu"}
    plain = hf.generate(model, prompts, np.random.default_rng(0), **settings)

    def control():
        torch.manual_seed(0)
        return model.generate(input_ids=torch.tensor([[1, 5, 6]]), do_sample=True, max_new_tokens=12, top_k=0,
                              pad_token_id=0)

    before = control()
    model.generation_config.repetition_penalty, model.generation_config.no_repeat_ngram_size = 50.0, 1
    assert not torch.equal(control(), before)  # these settings do change what model.generate samples
    with pytest.warns(UserWarning, match=r"'repetition_penalty': 50.0.*'no_repeat_ngram_size': 1|"
                                         r"'no_repeat_ngram_size': 1.*'repetition_penalty': 50.0"):
        penalized = hf.generate(model, prompts, np.random.default_rng(0), **settings)
    assert all(np.array_equal(a, b) for a, b in zip(plain, penalized, strict=True))
    assert model.generation_config.repetition_penalty == 50.0
