"""LMGame's data as a TRL user brings it: prompts from a datasets.Dataset, a save_to_disk folder
or an IterableDataset with extra columns that reach the judge and the reward functions, a
separate held-out set, chat prompts rendered with the tokenizer's chat template, and reward
functions called as TRL calls them (weighted sum, Bradley–Terry preference, counted, checked).

Offline and on CPU: the built-in model (its tokenizer carries a small chat template)."""

import math

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the optional [lm] extra is not installed")
datasets = pytest.importorskip("datasets", reason="the optional [data] extra is not installed")

from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from prefzoo.envs import judges  # noqa: E402
from prefzoo.envs.lm import builtin, data  # noqa: E402
from prefzoo.envs.lm.game import LMGame  # noqa: E402

NOUNS = ("movie", "book", "phone", "pizza", "hotel", "coffee")


def answer_dataset(nouns=NOUNS):
    return datasets.Dataset.from_dict({"prompt": [f"the {n} was" for n in nouns],
                                       "answer": [f"{n} good" for n in nouns], "level": list(range(len(nouns)))})


def test_a_dataset_its_saved_folder_and_its_iterable_form_give_the_same_rows(tmp_path):
    dataset = answer_dataset()
    dataset.save_to_disk(tmp_path / "saved")
    rows = data.read_rows(dataset)
    assert rows[0] == {"prompt": "the movie was", "answer": "movie good", "level": 0} and len(rows) == 6
    assert data.read_rows(str(tmp_path / "saved")) == data.read_rows(dataset.to_iterable_dataset()) == rows
    game = LMGame(prompts=dataset, eval_prompts=answer_dataset(("song", "salad")), max_new_tokens=4)
    assert game.n_train == 6 and list(game.eval_contexts) == [6, 7]  # the held-out set is eval_prompts, whole
    assert sorted(game.prompts[:6]) == sorted(f"the {n} was" for n in NOUNS)
    assert game.prompts[6:] == ["the song was", "the salad was"]
    assert all(game.rows[i]["answer"] == game.prompts[i].split()[1] + " good" for i in range(8))


def test_bad_data_is_named(tmp_path, monkeypatch):
    no_prompt = datasets.Dataset.from_dict({"text": ["the movie was", "the book was"]})
    with pytest.raises(ValueError, match=r"prompts dataset has no 'prompt' column \(columns \['text'\]\)"):
        LMGame(prompts=no_prompt)
    with pytest.raises(ValueError, match=r"eval_prompts is a dataset with splits \['test', 'train'\]"):
        LMGame(prompts=["a", "b"], eval_prompts=datasets.DatasetDict(train=answer_dataset(), test=answer_dataset()))
    monkeypatch.setattr(data, "hub_reachable", lambda: False)
    with pytest.raises(FileNotFoundError, match="prompts='stanfordnlp/imdb' is no local file or dataset folder.*"
                                                "cannot be downloaded here \\(offline\\)"):
        LMGame(prompts="stanfordnlp/imdb")
    with pytest.raises(ValueError, match="eval_prompts= .* or eval_fraction= .*not both"):
        LMGame(prompts=answer_dataset(), eval_prompts=answer_dataset(), eval_fraction=0.5)
    with pytest.raises(ValueError, match="lists of chat messages .*got \\[\\{'role': 'user'\\}\\] \\(row 0 of prompts"):
        LMGame(prompts=[{"prompt": [{"role": "user"}]}, {"prompt": "x"}])
    with pytest.raises(TypeError, match="prompts must be a list of prompts, a .txt or .jsonl file, a datasets"):
        LMGame(prompts=3)


def chat(*contents):
    roles = ("system", "user", "assistant", "user")[:len(contents)]
    return [{"role": role, "content": text} for role, text in zip(roles, contents, strict=True)]


def test_chat_prompts_are_rendered_with_the_chat_template_and_its_generation_prompt(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(builtin.builtin_model_path())
    conversations = [chat("be nice", "the movie was"), chat("be nice", "the book was", "good .", "the phone was")]
    game = LMGame(prompts=[{"prompt": c} for c in conversations], eval_prompts=["the song was"], max_new_tokens=4)
    for conversation in conversations:  # as TRL renders them
        expected = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        assert expected in game.prompts
    assert "<|endoftext|> be nice the book was good . <|endoftext|> the phone was" in game.prompts  # the template
    i = game.prompts.index("<|endoftext|> be nice the movie was")
    plain = LMGame(prompts=["be nice the movie was", "x"], eval_fraction=0.5, max_new_tokens=4)
    # its special tokens are the template's own (BOS once): the ids of the same plain text prompt
    assert list(game.prompt_ids[i]) == list(plain.prompt_ids[plain.prompts.index("be nice the movie was")])

    path = builtin.builtin_model_path()  # a template whose generation prompt shows: the game adds it
    AutoModelForCausalLM.from_pretrained(path).save_pretrained(tmp_path)
    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }} {% endfor %}{% if add_generation_prompt %}" \
                              "overall{% endif %}"
    tokenizer.save_pretrained(tmp_path)
    marked = LMGame(prompts=[{"prompt": chat("hi", "the movie was")}], eval_prompts=["x"], model=str(tmp_path))
    assert marked.prompts[0] == "hi the movie was overall"

    tokenizer.chat_template = None
    tokenizer.save_pretrained(tmp_path / "plain")
    AutoModelForCausalLM.from_pretrained(path).save_pretrained(tmp_path / "plain")
    with pytest.raises(ValueError, match="prompts hold chat messages but the tokenizer of model .*plain.* has no chat "
                                         "template"):
        LMGame(prompts=[{"prompt": conversations[0]}], eval_prompts=["x"], model=str(tmp_path / "plain"))


def test_columns_reach_the_judge_as_keyword_arguments_and_key_its_cache():
    asked = []

    def judge(prompt, a, b, answer, level):
        asked.append((prompt, a, b, answer, level))
        return float(answer.split()[1] in a)

    game = LMGame(prompts=answer_dataset(), oracle=judge, max_new_tokens=4, eval_fraction=0.5)
    y = game.store.add([np.array(game.tokenizer(t)["input_ids"]) for t in ("good !", "bad .")])
    x = np.arange(game.n_train)
    np.testing.assert_array_equal(game.prob(x, np.full_like(x, y[0]), np.full_like(x, y[1])), 1.0)
    assert [(p, answer, level) for p, _, _, answer, level in asked] == \
        [(game.prompts[i], game.rows[i]["answer"], game.rows[i]["level"]) for i in x]


def test_reward_functions_are_called_as_trl_calls_them_and_summed_with_their_weights():
    calls = []

    def has_answer(prompts, completions, answer, **kwargs):
        calls.append(("has_answer", list(prompts), list(completions), list(answer), sorted(kwargs)))
        return [float(a.split()[1] in (c if isinstance(c, str) else c[0]["content"]).split())
                for c, a in zip(completions, answer, strict=True)]

    def length(completions, **kwargs):
        return [len(c if isinstance(c, str) else c[0]["content"]) for c in completions]

    rows = [{"prompt": "the movie was", "answer": "movie good"},
            {"prompt": chat("hi", "the book was"), "answer": "b bad"}]
    oracle = judges.RewardFunctionOracle([has_answer, length], reward_weights=[2.0, -0.5])
    charged = []
    oracle.charge = charged.append
    texts = ["the movie was", "hi the book was"]
    scores = oracle.score(texts * 2, ["good !", "bad", "bad", "bad"], rows * 2)
    np.testing.assert_allclose(scores, [2.0 - 0.5 * 6, 2.0 - 0.5 * 3, -0.5 * 3, 2.0 - 0.5 * 3])
    assert charged == [3] and oracle.calls == 3 and oracle.cache_hits == 1  # ("hi the book was", "bad") twice
    assert calls == [("has_answer", ["the movie was", chat("hi", "the book was"), "the movie was"],
                      ["good !", [{"role": "assistant", "content": "bad"}], "bad"],
                      ["movie good", "b bad", "movie good"], [])]
    p = oracle.probability(texts, ["good !", "bad"], ["bad", "bad"], rows)
    np.testing.assert_allclose(p, [1 / (1 + math.exp(-(scores[0] - scores[2]))), 0.5])
    assert oracle.calls == 3  # all cached
    # another answer is another row: scored anew, not read from the cache
    assert oracle.score(["the movie was"], ["good !"], [{"prompt": "the movie was", "answer": "m bad"}])[0] == -3.0


@pytest.mark.parametrize("reward, match", [
    (lambda completions, **kw: [float("nan")] * len(completions), r"'bad' returned nan on prompt='p', completion='a'"),
    (lambda completions, **kw: [None] * len(completions), r"'bad' returned nan on prompt='p', completion='a'"),
    (lambda completions, **kw: [1.0, 2.0], "'bad' returned 2 scores for prompt='p', completion='a'"),
    (lambda completions, **kw: 1 / 0, "'bad' failed on prompt='p', completion='a': ZeroDivisionError"),
])
def test_a_reward_function_that_fails_is_named_with_its_input(reward, match):
    reward.__name__ = "bad"
    oracle = judges.RewardFunctionOracle(reward)
    with pytest.raises(judges.JudgeError, match=f"reward function {match}"):
        oracle.score(["p"], ["a"])
    assert oracle.calls == 0  # refunded: nothing scored, nothing paid


def test_bad_reward_settings_are_named():
    with pytest.raises(TypeError, match="reward_funcs\\[1\\] must be a callable \\(prompts=.*completions="):
        LMGame(prompts=["a", "b"], reward_funcs=[len, "accuracy"])
    with pytest.raises(ValueError, match=r"reward_weights must hold one finite number per reward function \(1\)"):
        LMGame(prompts=["a", "b"], reward_funcs=len, reward_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="give oracle= or reward_funcs=, not both"):
        LMGame(prompts=["a", "b"], oracle="vader", reward_funcs=len)
    with pytest.raises(ValueError, match="reward_weights weigh reward_funcs"):
        LMGame(prompts=["a", "b"], reward_weights=[1.0])
    with pytest.raises(TypeError, match="gives preferences, not rewards"):
        LMGame(prompts=["a", "b"], max_new_tokens=4).rewards([0], [0])
