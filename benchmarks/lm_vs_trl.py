"""prefzoo against TRL on the same language-model problem: time per training step, and win rate per
scored completion.

Problem: the built-in model (``prefzoo.envs.lm.builtin``), the game's 90 training prompts as
one-message chat prompts (the built-in chat template renders BOS + the text, the token ids prefzoo
gives a plain prompt), and one reward function, VADER's compound score of the completion, given to
both libraries as TRL calls it, ``reward(prompts=..., completions=..., **columns)``
(``LMGame(reward_funcs=...)`` in prefzoo, ``reward_funcs=`` in TRL). Sampling at temperature 1,
untruncated. CPU, one process, one torch thread.

**Step time.** TRL's ``GRPOTrainer`` and its online DPO trainer (``trl.experimental.online_dpo``
since TRL 1.0: it left the main namespace but is still shipped) against prefzoo's ``grpo`` and
``online_dpo``, each pair with the same batch (GRPO: 8 prompts x 4 completions, one gradient
step per batch; online DPO: 32 prompts x 2 completions), ``max_new_tokens``, learning rate, beta,
loss (GRPO: ``loss_type="grpo"``, per-token k3 weighted by the ratio, TRL's default
``use_bias_correction_kl``), constant learning rate, no gradient clipping. Interleaved step by
step: a TRL callback runs one prefzoo step (``algo.step()``: sample, score, gradient step) at
the end of each TRL step. A TRL step is the time between two consecutive ends of steps, less the
prefzoo step run in between (so everything TRL's loop does per step counts: data loading,
generation, reward, forward/backward, optimizer); the first step of each is a warm-up and dropped.
``trl_over_prefzoo_<algo>`` = median TRL step / median prefzoo step (> 1: TRL slower).

**Win rate per scored completion.** Over seeds 0-2: prefzoo's GRPO with the zoo config of
``prefzoo/LMGame-v0`` (8 prompts x 4 completions, 2 epochs per batch, lr 1e-3, beta 0.1,
per-token k3 with the ratio weight), WIND with its zoo config at batch 16 (2 completions per
prompt: 32 completions per iteration, like GRPO), and TRL's ``GRPOTrainer`` with GRPO's settings
(32 completions per generation, ``num_iterations=2``: 2 optimizer steps on each). All three train on
the VADER reward above and are judged by one evaluator, the game's held-out evaluation
(``est/win_rate_vs_ref``: 30 held-out prompts x 4 samples against π_ref's fixed responses, the
Bradley-Terry preference σ((s_a − s_b)/0.25) on VADER scores, the default VADER oracle's), after
800 and 1,600 completions sampled and scored in training (prefzoo: ``algo.samples``; TRL: the
completions its reward function received, counted). A TRL model is evaluated by loading its
weights into a prefzoo policy of the same game.

Measured (TRL 1.16.0, transformers 5.25.0, torch 2.13.0, 2 CPU cores shared with other jobs, 65 s):
TRL/prefzoo 1.25 for GRPO, 1.40 for online DPO; win rates in the README's "Coming from TRL".

Run: ``OMP_NUM_THREADS=1 python benchmarks/lm_vs_trl.py [--quick]`` (extra ``peers``: TRL).
Last line: ``RESULT trl_over_prefzoo_grpo=<x> trl_over_prefzoo_online_dpo=<y> grpo_min_seed_win_800=<w>``
(the smallest held-out win rate of prefzoo's GRPO over the seeds after 800 completions).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
from _quick import parse_args
from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback

import prefzoo
from prefzoo.envs.lm.builtin import builtin_model_path, default_prompts
from prefzoo.zoo.config import read_hyperparameters

WIN, KL = "est/win_rate_vs_ref", "est/kl_to_ref"
RUNNER_KEYS = ("iterations", "eval_freq", "save_freq")
PER_ITERATION = 32  # completions scored per GRPO / WIND iteration and per TRL generation
QUICK = {"steps": 2, "checkpoints": [32, 64], "seeds": [0], "eval_samples": 1}
_VADER = None


def vader(completions, **kwargs) -> list[float]:
    """VADER's compound score of each completion (text, or TRL's ``[{"role": "assistant", ...}]``)."""
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    texts = [c if isinstance(c, str) else c[-1]["content"] for c in completions]
    return [_VADER.polarity_scores(text)["compound"] for text in texts]


def make_env(max_new_tokens: int, eval_samples: int = 4, reward=vader):
    """LMGame on the built-in prompts as chat rows, rewarded by ``reward`` (T = 0.25: the VADER
    oracle's preference)."""
    rows = [{"prompt": [{"role": "user", "content": text}]} for text in default_prompts()]
    return gym.make("prefzoo/LMGame-v0", prompts=rows, reward_funcs=reward, oracle_kwargs={"temperature": 0.25},
                    max_new_tokens=max_new_tokens, eval_samples=eval_samples)


def zoo_algo(name: str, env, seed: int, **overrides):
    """prefzoo's ``name`` with its zoo config for ``prefzoo/LMGame-v0`` (runner keys dropped), ``overrides`` on top."""
    config = {k: v for k, v in read_hyperparameters(name, "prefzoo/LMGame-v0").items() if k not in RUNNER_KEYS}
    return prefzoo.make_algo(name, env, seed=seed, **{**config, **overrides})


def trl_trainer(kind: str, game, seed: int, max_steps: int, callbacks, reward=vader, **settings):
    """TRL's GRPO or online DPO trainer on ``game``'s training prompts and a fresh copy of its model,
    on CPU in fp32, constant learning rate, no clipping, no logging or saving."""
    from datasets import Dataset

    if kind == "grpo":
        from trl import GRPOConfig as Config
        from trl import GRPOTrainer as Trainer
    else:
        from trl.experimental.online_dpo import OnlineDPOConfig as Config
        from trl.experimental.online_dpo import OnlineDPOTrainer as Trainer
    folder = tempfile.mkdtemp(prefix="lm_vs_trl")
    args = Config(output_dir=folder, report_to="none", save_strategy="no", use_cpu=True, bf16=False,
                  logging_steps=10**6, disable_tqdm=True, max_steps=max_steps, seed=seed, lr_scheduler_type="constant",
                  max_grad_norm=0.0, temperature=1.0, **settings)
    dataset = Dataset.from_dict({"prompt": [row["prompt"] for row in game.rows[:game.n_train]]})
    tokenizer = AutoTokenizer.from_pretrained(builtin_model_path(), padding_side="left")
    trainer = Trainer(model=AutoModelForCausalLM.from_pretrained(builtin_model_path()), reward_funcs=reward, args=args,
                      train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the end-of-training metrics dict
    return trainer


class Interleave(TrainerCallback):
    """At the end of each TRL step, time one prefzoo step; TRL's step is the time between two ends
    of steps less that prefzoo step."""

    def __init__(self, algo):
        self.algo, self.trl, self.prefzoo, self._mark = algo, [], [], None

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if self._mark is not None:
            self.trl.append(now - self._mark)
        start = time.perf_counter()
        self.algo.step()
        self.prefzoo.append(time.perf_counter() - start)
        self._mark = time.perf_counter()


def step_ratio(kind: str, steps: int, max_new_tokens: int = 16) -> float:
    """Median seconds per step of TRL's ``kind`` (``grpo`` | ``online_dpo``) over prefzoo's, interleaved;
    printed with both medians and the quartiles of the step-by-step ratios."""
    env = make_env(max_new_tokens)
    if kind == "grpo":
        algo = zoo_algo("grpo", env, 0, n_epochs=1)
        settings = {"per_device_train_batch_size": algo.batch_size * algo.group_size,
                    "num_generations": algo.group_size, "num_iterations": 1, "max_completion_length": max_new_tokens,
                    "loss_type": "grpo", "epsilon": algo.clip, "use_bias_correction_kl": True}
    else:
        algo = zoo_algo("online_dpo", env, 0)
        settings = {"per_device_train_batch_size": algo.batch_size, "max_new_tokens": max_new_tokens}
    interleave = Interleave(algo)
    trainer = trl_trainer(kind, env.unwrapped.game, 0, steps + 1, [interleave], learning_rate=algo.lr, beta=algo.beta,
                          **settings)
    trainer.train()
    trl, ours = np.array(interleave.trl), np.array(interleave.prefzoo[1:])  # TRL's first step has no start mark
    q1, q3 = np.percentile(trl / ours, [25, 75])
    ratio = float(np.median(trl) / np.median(ours))
    print(f"{kind:10s} step: TRL {np.median(trl) * 1e3:6.1f} ms   prefzoo {np.median(ours) * 1e3:6.1f} ms   "
          f"TRL/prefzoo {ratio:.2f} (step by step: quartiles {q1:.2f}-{q3:.2f}; {len(trl)} steps each after a warm-up)",
          flush=True)
    return ratio


class Counted:
    """A reward function that counts the completions it scores (TRL's training completions)."""

    __name__ = "vader"

    def __init__(self):
        self.completions = 0

    def __call__(self, completions, **kwargs) -> list[float]:
        self.completions += len(completions)
        return vader(completions)


def prefzoo_wins(name: str, seed: int, checkpoints: list[int], eval_samples: int, **overrides) -> list[float]:
    """Held-out win rate of prefzoo's ``name`` (zoo config + ``overrides``) after each number of
    training completions in ``checkpoints``, with its KL to π_ref (nats)."""
    algo = zoo_algo(name, make_env(12, eval_samples), seed, **overrides)
    wins = []
    for target in checkpoints:
        while algo.samples < target:
            algo.step()
            algo.iteration += 1
        assert algo.samples == target, f"{name}: {algo.samples} completions, not {target}"
        metrics = algo.evaluate()
        wins.append((metrics[WIN], metrics[KL]))
    return wins


class EvaluateAt(TrainerCallback):
    """After the TRL steps in ``at`` (step -> completions), the held-out win rate of TRL's model,
    loaded into ``evaluator``'s prefzoo policy."""

    def __init__(self, evaluator, at: dict[int, int], reward: Counted):
        self.evaluator, self.at, self.reward, self.wins = evaluator, at, reward, []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step in self.at:
            assert self.reward.completions == self.at[state.global_step], "TRL scored another number of completions"
            self.evaluator.policy.model.load_state_dict(model.state_dict())
            self.evaluator.iteration = self.at[state.global_step] // PER_ITERATION
            metrics = self.evaluator.evaluate()
            self.wins.append((metrics[WIN], metrics[KL]))


def trl_wins(seed: int, checkpoints: list[int], eval_samples: int) -> list[float]:
    """Held-out win rate and KL to π_ref of TRL's GRPO with prefzoo GRPO's zoo settings after each number of
    completions."""
    evaluator = zoo_algo("grpo", make_env(12, eval_samples), seed)
    reward = Counted()
    per_step = PER_ITERATION // evaluator.grad_steps  # num_iterations optimizer steps per generation
    callback = EvaluateAt(evaluator, {c // per_step: c for c in checkpoints}, reward)
    settings = {"per_device_train_batch_size": PER_ITERATION, "num_generations": evaluator.group_size,
                "num_iterations": evaluator.grad_steps, "max_completion_length": 12, "loss_type": "grpo",
                "epsilon": evaluator.clip, "use_bias_correction_kl": True}
    trainer = trl_trainer("grpo", evaluator.game, seed, checkpoints[-1] // per_step, [callback], reward=reward,
                          learning_rate=evaluator.lr, beta=evaluator.beta, **settings)
    trainer.train()
    return callback.wins


def win_table(seeds: list[int], checkpoints: list[int], eval_samples: int) -> dict[str, np.ndarray]:
    """(win rate, KL) [seed, checkpoint, 2] of prefzoo's GRPO, WIND and TRL's GRPO, printed as a table."""
    runs = {"prefzoo GRPO (zoo config)": lambda s: prefzoo_wins("grpo", s, checkpoints, eval_samples),
            "prefzoo WIND (zoo config, batch 16)": lambda s: prefzoo_wins("wind", s, checkpoints, eval_samples,
                                                                          batch_size=PER_ITERATION // 2),
            "TRL GRPOTrainer (same settings)": lambda s: trl_wins(s, checkpoints, eval_samples)}
    table = {}
    for label, run in runs.items():
        start = time.perf_counter()
        table[label] = np.array([run(seed) for seed in seeds])
        print(f"  {label}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\nheld-out win rate vs pi_ref (KL to pi_ref, nats), seeds {', '.join(map(str, seeds))}; mean over seeds")
    print("| trainer | " + " | ".join(f"after {c:,} completions | mean" for c in checkpoints) + " |")
    print("|---|" + "---|---|" * len(checkpoints))
    for label, values in table.items():
        cells = [" ".join(f"{w:.3f} ({k:.1f})" for w, k in values[:, j]) + f" | {values[:, j, 0].mean():.3f} "
                 f"({values[:, j, 1].mean():.1f})" for j in range(len(checkpoints))]
        print(f"| {label} | " + " | ".join(cells) + " |")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per trainer (after one warm-up)")
    parser.add_argument("--checkpoints", type=int, nargs="+", default=[800, 1600],
                        help=f"training completions at which to evaluate (multiples of {PER_ITERATION})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--eval-samples", type=int, default=4, help="responses per held-out prompt")
    args = parse_args(parser, QUICK)
    torch.set_num_threads(1)
    import trl

    print(f"TRL {trl.__version__}, torch {torch.__version__}, {torch.get_num_threads()} thread, CPU, built-in model")
    ratios = {}
    for kind in ("grpo", "online_dpo"):
        ratios[kind] = step_ratio(kind, args.steps)
    table = win_table(args.seeds, args.checkpoints, args.eval_samples)
    grpo_800 = table["prefzoo GRPO (zoo config)"][:, 0, 0]
    print(f"RESULT trl_over_prefzoo_grpo={ratios['grpo']:.2f} trl_over_prefzoo_online_dpo={ratios['online_dpo']:.2f} "
          f"grpo_min_seed_win_{args.checkpoints[0]}={grpo_800.min():.3f}")


if __name__ == "__main__":
    main()
