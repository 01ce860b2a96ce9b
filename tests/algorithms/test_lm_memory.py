"""Memory and optimization controls of LM policies (issue 22 item 5), on the built-in model, CPU:
micro-batches give the whole batch's gradient, gradient checkpointing the same loss and gradients,
dtype (bf16 autocast on CPU, fp16 refused there), clipping, warmup and LR schedules (the factors of
transformers' get_scheduler; the defaults keep today's numbers), any peft config, and generation
settings scored under exactly the distribution sampled (against a manual step-by-step loop)."""

import math

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the optional [lm] extra is not installed")
pytest.importorskip("vaderSentiment", reason="the optional [lm] extra is not installed")

import torch  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    NoRepeatNGramLogitsProcessor,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
)

import prefzoo  # noqa: E402
from prefzoo.algorithms.base import lr_factor  # noqa: E402
from prefzoo.algorithms.lm_policy import LMPolicy  # noqa: E402
from prefzoo.envs.lm.env import LMGameEnv  # noqa: E402
from prefzoo.envs.lm.game import LMGame  # noqa: E402
from prefzoo.zoo import config  # noqa: E402

PROMPTS = [f"the {n} was" for n in ("movie", "book", "phone", "pizza", "hotel", "coffee", "camera", "song")]
PROMPTS += ["i bought this laptop and it", "we loved it"]  # other lengths: rows are left-padded


def policy_and_batch(**kwargs):
    game = LMGame(prompts=PROMPTS, max_new_tokens=6, temperature=0.9, **kwargs)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy = LMPolicy(game, torch.device("cpu"))
    x = np.array([0, 1, 2, 3, 4, 5, 6, 0, 2])
    y = policy.sample(x, np.random.default_rng(1))
    return policy, torch.as_tensor(x), torch.as_tensor(y)


def same_batch(policy, source, y):
    """``source``'s responses ``y`` as handles of ``policy``'s own game."""
    return torch.as_tensor(policy.game.store.add([source.game.store.tokens[h] for h in y.numpy()]))


def gradients(policy, loss_fn):
    policy.model.zero_grad()
    loss = loss_fn()
    loss.backward()
    grads = {name: p.grad.clone() for name, p in policy.model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


LOSSES = {  # a mean over the batch, and one that is not a sum of per-row terms (group-normalized)
    "mean": lambda lp: -(lp * torch.linspace(-1, 1, len(lp))).mean(),
    "normalized": lambda lp: -((lp - lp.mean()) / (lp.std() + 1)).pow(2).mean(),
}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_micro_batches_give_the_whole_batch_gradient(loss):
    full, x, y = policy_and_batch()
    micro, _, _ = policy_and_batch(micro_batch_size=4)  # 9 rows: chunks of 4, 4 and 1
    value, expected = gradients(full, lambda: LOSSES[loss](full.log_prob(x, y)))
    y_micro = same_batch(micro, full, y)
    micro_value, got = gradients(micro, lambda: LOSSES[loss](micro.log_prob(x, y_micro)))
    assert micro_value == pytest.approx(value, abs=1e-5)
    assert expected.keys() == got.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    with torch.no_grad():  # the no-gradient paths run by micro-batches too, with the same values
        torch.testing.assert_close(micro.ref_log_prob(x, y_micro), full.ref_log_prob(x, y), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(micro.token_kl(x, y_micro), full.token_kl(x, y), rtol=1e-5, atol=1e-5)


def test_micro_batches_give_the_whole_batch_gradient_per_token():
    """GRPO's per-token terms (chunks of unequal response lengths, padded to the batch's) through a
    per-token loss that weighs positions unequally and normalizes by each response's length."""
    full, x, y = policy_and_batch()
    micro, _, _ = policy_and_batch(micro_batch_size=4)
    y_micro = same_batch(micro, full, y)

    def loss(policy, ys):
        picked, mask = policy.token_log_probs(x, ys)
        weights = torch.linspace(-1, 2, picked.shape[1]) * torch.linspace(1, -1, len(x))[:, None]
        return -((picked * weights).sum(1) / mask.sum(1)).mean()

    value, expected = gradients(full, lambda: loss(full, y))
    rows = []  # the rows of each forward pass: never more than a micro-batch, the backward's replay included
    micro.model.register_forward_pre_hook(lambda module, args, kwargs: rows.append(len(kwargs["input_ids"])),
                                          with_kwargs=True)
    micro_value, got = gradients(micro, lambda: loss(micro, y_micro))
    assert rows == [4, 4, 1] * 2
    assert micro_value == pytest.approx(value, abs=1e-5)
    assert expected.keys() == got.keys() and len(got) > 10
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-5, msg=name)
    lengths = [len(full.game.store.tokens[h]) for h in y.tolist()]
    assert len(set(lengths)) > 1  # the chunks' widths differ
    for reference in (False, True):
        (a, mask_a), (b, mask_b) = (p.token_log_probs(x, ys, reference=reference)
                                    for p, ys in ((full, y), (micro, y_micro)))
        torch.testing.assert_close(b.detach(), a.detach(), rtol=1e-5, atol=1e-5)
        assert torch.equal(mask_a, mask_b) and mask_a.sum(1).tolist() == lengths


def test_gradient_checkpointing_recomputes_layers_with_the_same_loss_and_gradients():
    plain, x, y = policy_and_batch()
    checkpointed, _, _ = policy_and_batch(gradient_checkpointing=True)
    calls = []
    block = checkpointed.model.transformer.h[0]
    assert block.gradient_checkpointing and block.training
    # a submodule's pre-hook (the block's own hooks sit outside its checkpoint, and the replay stops early)
    block.mlp.register_forward_pre_hook(lambda *args: calls.append(1))
    value, expected = gradients(plain, lambda: LOSSES["mean"](plain.log_prob(x, y)))
    y_checkpointed = same_batch(checkpointed, plain, y)
    got_value, got = gradients(checkpointed, lambda: LOSSES["mean"](checkpointed.log_prob(x, y_checkpointed)))
    assert len(calls) == 2  # the forward, and its replay in the backward pass
    assert got_value == value
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=1e-7, msg=name)
    assert not block.attn.training and not any(m.training for m in block.modules() if m is not block)  # no dropout
    np.testing.assert_array_equal(  # generation (no gradient) keeps its KV cache: the same responses
        checkpointed.game.store.text(checkpointed.sample(x.numpy(), np.random.default_rng(3))),
        plain.game.store.text(plain.sample(x.numpy(), np.random.default_rng(3))))


def test_dtype_bf16_autocasts_on_cpu_fp16_is_refused_there_by_name():
    fp32, x, y = policy_and_batch()
    bf16, _, _ = policy_and_batch(dtype="bf16")
    with torch.no_grad():
        low, high = bf16.log_prob(x, same_batch(bf16, fp32, y)), fp32.log_prob(x, y)
    assert low.dtype == torch.float32 and not torch.equal(low, high)  # summed in float32, computed in bf16
    assert float((low - high).abs().max() / high.abs().mean()) < 0.2  # bf16's 8-bit mantissa, over 6 tokens
    with pytest.raises(ValueError, match="dtype='fp16' needs a CUDA device"):
        policy_and_batch(dtype="fp16")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        LMGame(prompts=PROMPTS, dtype="float8")


def test_lr_factor_matches_transformers_get_scheduler():
    from transformers import get_scheduler

    for name, ours in (("constant_with_warmup", "constant"), ("linear", "linear"), ("cosine", "cosine")):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=3, num_training_steps=10)
        for step in range(10):
            assert lr_factor(step, ours, 3, 10) == pytest.approx(optimizer.param_groups[0]["lr"], abs=1e-12)
            optimizer.step()
            scheduler.step()
    assert lr_factor(12, "cosine", 3, 10) == 0.0 and lr_factor(12, "linear", 3, 10) == 0.0  # held at 0 after


@pytest.fixture(scope="module")
def lm_env():
    return LMGameEnv(game=LMGame(prompts=PROMPTS, max_new_tokens=4, temperature=0.9))


def test_clipping_and_schedule_reach_every_algorithm_and_the_defaults_change_nothing(lm_env):
    assert {"max_grad_norm", "warmup_steps", "lr_schedule", "lr_schedule_steps"} <= set(
        config.hyperparameter_names("grpo")) & set(config.hyperparameter_names("spo"))
    runs = {}
    for label, hp in {"plain": {}, "defaults": {"max_grad_norm": 0, "warmup_steps": 0, "lr_schedule": "constant"},
                      "clipped": {"max_grad_norm": 1e-3, "warmup_steps": 1, "lr_schedule": "cosine",
                                  "lr_schedule_steps": 4}}.items():
        algo = prefzoo.make_algo("online_dpo", lm_env, seed=0, policy="hf", batch_size=4, lr=1e-2, grad_steps=2, **hp)
        before = [p.detach().clone() for p in algo.policy.parameters()]
        algo.step()
        runs[label] = [p.detach() - b for p, b in zip(algo.policy.parameters(), before, strict=True)]
        assert algo.optimizer_steps == 2 and algo.optimizer.param_groups[0]["lr"] == 1e-2  # the rate is restored
        assert algo.state_dict()["optimizer_steps"] == 2
    assert all(torch.equal(a, b) for a, b in zip(runs["plain"], runs["defaults"], strict=True))
    # warmup: step 0 at rate 0, step 1 at rate 0.01 * cos-factor 1 on a gradient clipped to norm 1e-3: Adam
    # moves each weight by at most about lr, a step of the unclipped run by far more in total
    moved = max(float(d.abs().max()) for d in runs["clipped"])
    assert 0 < moved <= 1e-2 * 1.01


def test_bad_optimization_settings_are_named(lm_env):
    with pytest.raises(ValueError, match="give lr_schedule_steps > warmup_steps=2, got 0"):
        prefzoo.make_algo("online_dpo", lm_env, policy="hf", lr_schedule="linear", warmup_steps=2)
    with pytest.raises(ValueError, match="lr_schedule='constant' takes none"):
        prefzoo.make_algo("online_dpo", lm_env, policy="hf", lr_schedule_steps=10)
    with pytest.raises(ValueError, match="max_grad_norm"):
        prefzoo.make_algo("online_dpo", lm_env, policy="hf", max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="unknown lr_schedule 'cosin'"):
        prefzoo.make_algo("online_dpo", lm_env, policy="hf", lr_schedule="cosin", lr_schedule_steps=5)
    with pytest.raises(ValueError, match="max_grad_norm sets the optimizer.*exact mode trains none"):
        prefzoo.make_algo("wind", "prefzoo/PrefBandit-Cyclic-v0", mode="exact", max_grad_norm=1.0)


def test_peft_config_object_or_dict_trains_adapters_only():
    peft = pytest.importorskip("peft")
    for given in (peft.LoraConfig(r=2, target_modules=["c_attn"], lora_dropout=0.0),
                  {"r": 2, "target_modules": ["c_attn"]}):
        policy, x, y = policy_and_batch(peft_config=given)
        trainable = [name for name, p in policy.named_parameters() if p.requires_grad]
        assert trainable and all("lora_" in name and "c_attn" in name for name in trainable)
        with torch.no_grad():
            torch.testing.assert_close(policy.log_prob(x, y), policy.ref_log_prob(x, y))  # B = 0 at init
    with pytest.raises(ValueError, match="not both"):
        LMGame(prompts=PROMPTS, lora_rank=2, peft_config={"r": 2})
    with pytest.raises(ValueError, match="prepends virtual tokens"):
        LMGame(prompts=PROMPTS, peft_config=peft.PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=2))
    with pytest.raises(ValueError, match="not a valid peft config"):
        LMGame(prompts=PROMPTS, peft_config={"rank": 2})


def manual_generation(model, prompt, processors, generator, steps, eos):
    """Sample token by token from softmax(processors(prefix, logits)) on the unpadded prefix; returns
    the tokens and the sum of log-softmax of the processed logits at the drawn tokens."""
    ids, total = list(prompt), 0.0
    for _ in range(steps):
        with torch.no_grad():
            scores = model(torch.tensor([ids])).logits[:, -1].float()
        for processor in processors:
            scores = processor(torch.tensor([ids]), scores)
        token = int(torch.multinomial(torch.softmax(scores, -1), 1, generator=generator))
        total += float(torch.log_softmax(scores.double(), -1)[0, token])
        ids.append(token)
        if token == eos:
            break
    return np.array(ids[len(prompt):]), total


@pytest.mark.parametrize("settings, processors", [
    ({"top_k": 5}, [TemperatureLogitsWarper(0.9), TopKLogitsWarper(5)]),
    ({"repetition_penalty": 1.5, "no_repeat_ngram_size": 2},
     [RepetitionPenaltyLogitsProcessor(1.5), NoRepeatNGramLogitsProcessor(2), TemperatureLogitsWarper(0.9)]),
])
def test_generation_settings_are_scored_as_sampled_by_a_manual_loop(settings, processors):
    policy, _, _ = policy_and_batch(generation_kwargs=settings)
    game = policy.game
    model = AutoModelForCausalLM.from_pretrained(game.model_path).eval()
    generator = torch.Generator().manual_seed(0)
    x, expected = [], []
    for context in (8, 0, 9, 3, 8, 1):  # prompts of 3 lengths, scored together (left padding)
        tokens, total = manual_generation(model, game.prompt_ids[context], processors, generator, 6,
                                          game.tokenizer.eos_token_id)
        x.append(context)
        expected.append((game.store.add([tokens])[0], total))
    with torch.no_grad():
        scored = policy.log_prob(torch.as_tensor(x), torch.as_tensor([h for h, _ in expected])).double().numpy()
    np.testing.assert_allclose(scored, [total for _, total in expected], rtol=1e-4, atol=1e-4)
    assert np.isfinite(scored).all()


def test_generate_applies_the_settings_per_row_and_unscorable_ones_are_refused_by_name():
    greedy, _, _ = policy_and_batch(generation_kwargs={"top_k": 1})
    x = np.array([0, 8, 9, 0])
    a, b = greedy.sample(x, np.random.default_rng(0)), greedy.sample(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)  # top-1: deterministic
    blocked, _, _ = policy_and_batch(generation_kwargs={"no_repeat_ngram_size": 1})
    for context, handle in zip(x, blocked.sample(x, np.random.default_rng(0)), strict=True):
        tokens = [*blocked.game.prompt_ids[context], *blocked.game.store.tokens[handle]]
        assert len(set(tokens)) == len(tokens)  # no token twice in its own row: prompt and response, no padding
    with pytest.raises(ValueError, match=r"generation_kwargs\['min_new_tokens'\] cannot be scored"):
        LMGame(prompts=PROMPTS, generation_kwargs={"min_new_tokens": 2})
    with pytest.raises(ValueError, match=r"generation_kwargs\['temperature'\]: give temperature= itself"):
        LMGame(prompts=PROMPTS, generation_kwargs={"temperature": 0.5})
    with pytest.raises(ValueError, match=r"generation_kwargs\['top_k'\]"):
        LMGame(prompts=PROMPTS, generation_kwargs={"top_k": -1})


def test_a_response_outside_the_references_truncated_support_is_refused_by_name():
    policy, x, y = policy_and_batch(generation_kwargs={"top_k": 2})
    with torch.no_grad():
        for p in policy.model.parameters():  # a trained policy far from pi_ref
            p.add_(torch.randn_like(p) * 0.5)
    far = policy.sample(x.numpy(), np.random.default_rng(0))
    assert math.isinf(float(policy.token_kl(x, torch.as_tensor(far)).max()))  # the true KL, +inf
    with pytest.raises(ValueError, match="outside pi_ref's support.*top_k"):
        policy.ref_log_prob(x, torch.as_tensor(far))
