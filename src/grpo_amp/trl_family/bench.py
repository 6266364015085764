"""``grpo-amp bench trl``: one GRPO iteration of ours against one of TRL's ``GRPOTrainer``, at equal work.

Both trainers run in one process, interleaved, from the same weights; the report's last line is
``speedup_vs_trl: X.XX``. On a CPU shared with other busy processes, prefer ``--threads 1``: a
multi-threaded op waits for its slowest thread, and a thread that loses its core stalls the whole
op (both trainers alike, so the ratio holds better than the times). Needs the bench extra (TRL).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask a hub

import torch  # noqa: E402
from transformers import TrainerCallback  # noqa: E402

from grpo_amp.config import (Config, GRPOConfig, KLEstimator, LossAgg, ModelConfig, PolicyConfig,  # noqa: E402
                             PolicyName, RatioLevel, Std, TaskConfig, VariantConfig)
from grpo_amp.bench.bounds import TimeSplit, format_split, time_split  # noqa: E402
from grpo_amp.bench.flops import ModelShape, Work, iteration_flops, matmul_peak  # noqa: E402
from grpo_amp.grpo.trainer import grpo_update  # noqa: E402
from grpo_amp.io import InputError  # noqa: E402
from grpo_amp.policies.lm.model import build_model  # noqa: E402
from grpo_amp.policies.transformer import TransformerPolicy  # noqa: E402
from grpo_amp.grpo.rollout import Rollout  # noqa: E402
from grpo_amp.tasks.modarith import ModArithTask  # noqa: E402


@dataclass(frozen=True)
class TrlSetup:
    """The work both trainers do per GRPO iteration (the defaults are the issue's measured setting)."""
    modulus: int = 10          # one-digit operands: prompt "<bos>a+b=" is 5 tokens
    n_questions: int = 32
    answer_digits: int = 3     # at most 3 digits then <eos>: at most T = 4 completion tokens
    group_size: int = 8
    beta: float = 0.04
    clip_eps: float = 0.2
    lr: float = 1e-5
    hidden: int = 128
    intermediate: int = 256
    layers: int = 2
    heads: int = 4
    warmup: int = 2            # rounds run and discarded before timing (allocator, caches, lazy inits)
    seed: int = 0

    def task_config(self) -> TaskConfig:
        return TaskConfig(name="modarith", modulus=self.modulus, n_train=self.n_questions, n_heldout=0,
                          answer_digits=self.answer_digits, seed=self.seed)

    def model_config(self) -> ModelConfig:
        return ModelConfig(n_layer=self.layers, n_embd=self.hidden, n_head=self.heads,
                           intermediate_size=self.intermediate)

    def our_config(self) -> Config:
        """Ours set as TRL's loss below: k3, token-level ratios, token-mean aggregation, sample std."""
        return Config(variant=VariantConfig(name="bench_trl", beta=self.beta, std=Std.sample, eps=1e-8),
                      grpo=GRPOConfig(group_size=self.group_size, inner_steps=1, lr=self.lr, clip_eps=self.clip_eps,
                                      kl_estimator=KLEstimator.k3, ratio_level=RatioLevel.token,
                                      loss_agg=LossAgg.token_mean),
                      policy=PolicyConfig(name=PolicyName.transformer, device="cpu"),
                      task=self.task_config(), seed=self.seed)


@dataclass
class TrlResult:
    setup: TrlSetup
    threads: int
    model: ModelShape
    work: Work
    ours_s: list[float]
    trl_s: list[float]
    copy_s: list[float]        # policy.frozen_copy(): pi_{n-1}, made by train() outside grpo_update
    ours_flops: float
    trl_flops: float
    peak_flops: float
    trl_version: str
    trl_config: list[str]
    split: TimeSplit | None = None  # where ours spends an iteration (bench.bounds), when profiled

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours_s)

    @property
    def trl_median(self) -> float:
        return statistics.median(self.trl_s)

    @property
    def speedup(self) -> float:
        return self.trl_median / self.ours_median


# --------------------------------------------------------------------------- pieces
def require_trl():
    try:
        import datasets  # noqa: F401
        import trl
    except ImportError:
        raise InputError("bench trl needs TRL (trl>=1.16,<1.17): pip install -e .") from None
    return trl


def trl_config(setup: TrlSetup, work: Work, out_dir: str, steps: int):
    """TRL's GRPOConfig for the same work as ours, and the lines that say how and why."""
    from trl import GRPOConfig as TrlGRPOConfig

    Q, G, T = work.n_questions, work.group_size, work.completion_len
    kwargs = dict(
        per_device_train_batch_size=Q * G, gradient_accumulation_steps=1, num_generations=G,
        max_completion_length=T, num_iterations=1, max_steps=steps,
        beta=setup.beta, loss_type="dapo", scale_rewards="group", epsilon=setup.clip_eps,
        importance_sampling_level="token", temperature=1.0, top_p=1.0, top_k=0,
        learning_rate=setup.lr, lr_scheduler_type="constant", optim="adamw_torch", weight_decay=0.0,
        max_grad_norm=0.0, gradient_checkpointing=False, bf16=False, fp16=False, use_cpu=True,
        shuffle_dataset=False, dataloader_num_workers=0, logging_steps=10**9, save_strategy="no",
        report_to="none", disable_tqdm=True, log_completions=False, seed=setup.seed, output_dir=out_dir,
    )
    lines = [
        f"  per_device_train_batch_size={Q * G} (= {Q} prompts x num_generations={G}), gradient_accumulation_steps=1,"
        " num_iterations=1: one generation and one optimizer step per iteration, like grpo_update with 1 inner step",
        f"  max_completion_length={T}, temperature=1, top_p=1, top_k=0: the same sampling as ours",
        f"  beta={setup.beta}, loss_type=dapo, importance_sampling_level=token, epsilon={setup.clip_eps},"
        " scale_rewards=group: ours with kl_estimator=k3, ratio_level=token, loss_agg=token_mean, std=sample",
        "  gradient_checkpointing=False (TRL's default True recomputes the forward in backward; ours does not)",
        "  bf16=False (TRL's default True when fp16 is unset; ours runs fp32 on the CPU)",
        f"  learning_rate={setup.lr:g} (TRL's default 1e-6; ours), lr_scheduler_type=constant, optim=adamw_torch,"
        " weight_decay=0: Adam's update, as ours; max_grad_norm=0: no clipping, as ours",
        f"  shuffle_dataset=False over the same {Q} prompts every step; no logging, saving or reporting in the steps",
    ]
    return TrlGRPOConfig(**kwargs), lines


class VerifierReward:
    """Our verifier as a TRL reward function, on TRL's completions (lists of ids, <eos> included when drawn)."""

    def __init__(self, task: ModArithTask):
        self.task = task

    def __call__(self, prompts, completions, completion_ids, question, **_) -> list[float]:
        T = self.task.max_new_tokens
        tokens = torch.full((len(completion_ids), 1, T), self.task.pad_id, dtype=torch.long)
        mask = torch.zeros((len(completion_ids), 1, T), dtype=torch.bool)
        for i, ids in enumerate(completion_ids):
            tokens[i, 0, : len(ids)] = torch.as_tensor(ids)
            mask[i, 0, : len(ids)] = True
        return self.task.reward(Rollout(torch.as_tensor(question), tokens, mask))[:, 0].tolist()


class OurIteration:
    """One iteration of ours as train() runs it: the frozen copy pi_{n-1}, then grpo_update; timed apart."""

    def __init__(self, policy: TransformerPolicy, task: ModArithTask, questions: torch.Tensor, cfg: Config):
        self.policy, self.task, self.questions, self.cfg = policy, task, questions, cfg
        self.ref = policy.frozen_copy()
        self.generator = torch.Generator().manual_seed(cfg.seed)
        self.copy_s: list[float] = []
        self.update_s: list[float] = []

    def __call__(self) -> None:
        start = time.perf_counter()
        old = self.policy.frozen_copy()
        copied = time.perf_counter()
        grpo_update(self.policy, old, self.ref, self.task, self.questions, self.cfg, self.generator)
        done = time.perf_counter()
        self.copy_s.append(copied - start)
        self.update_s.append(done - copied)


class Interleave(TrainerCallback):
    """After each TRL step: record its time (from the end of the previous round), then run one of ours."""

    def __init__(self, ours: OurIteration):
        self.ours = ours
        self.trl_s: list[float] = []

    def on_train_begin(self, *args, **kwargs):
        self.mark = time.perf_counter()

    def on_step_end(self, *args, **kwargs):
        self.trl_s.append(time.perf_counter() - self.mark)
        self.ours()
        self.mark = time.perf_counter()


def bench_task(setup: TrlSetup) -> tuple[ModArithTask, torch.Tensor, list[str]]:
    """The task, its train questions and their prompt texts; RuntimeError if TRL would tokenize them otherwise."""
    task = ModArithTask(setup.task_config())
    questions = task.split_ids("train")
    prompts = [str(p) for p in task.questions.loc[questions.numpy(), "prompt"]]
    if task.tokenizer(prompts)["input_ids"] != task.prompt_ids[questions].tolist():  # TRL tokenizes the text itself
        raise RuntimeError("TRL would see other prompt tokens than ours")
    return task, questions, prompts


def save_start_model(setup: TrlSetup, task: ModArithTask, directory: str) -> None:
    """The weights both trainers start from: HF's defaults (untied head, init 0.02), as a TRL user gets them."""
    model = build_model(task, setup.model_config(), setup.seed, tie_word_embeddings=False, initializer_range=0.02)
    model.save_pretrained(directory)
    task.tokenizer.save_pretrained(directory)


def set_threads(threads: int | None) -> int:
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1; got {threads!r}")
        torch.set_num_threads(threads)
    return torch.get_num_threads()


# --------------------------------------------------------------------------- the benchmark
def bench_trl(repeat: int = 5, threads: int | None = None, setup: TrlSetup = TrlSetup(),
              profile: bool = False) -> TrlResult:
    """Time one GRPO iteration of ours and of TRL's GRPOTrainer at equal work, interleaved in one process.

    Round r: one TRL training step (generation, reward, reference log-probs, loss, backward, optimizer
    step), then one ``grpo_update`` of ours. The TRL step is timed from the end of the previous round
    to its ``on_step_end`` callback, so it includes TRL's data loading and bookkeeping; ours is the
    call of ``grpo_update`` (sampling from pi_old, reward, advantages, reference log-probs, one inner
    step). Both start from the same weights, saved once to a temporary directory.
    """
    trl = require_trl()
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from transformers.utils import logging as hf_logging

    threads = set_threads(threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    task, questions, prompts = bench_task(setup)
    steps = setup.warmup + repeat
    with tempfile.TemporaryDirectory(prefix="grpo-amp-bench-trl-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_dir = os.path.join(tmp, "model")
        save_start_model(setup, task, model_dir)
        policy = TransformerPolicy.load(model_dir, task, device="cpu")  # the weights TRL loads too
        ours = OurIteration(policy, task, questions, setup.our_config())
        work = Work(len(questions), setup.group_size, task.prompt_ids.shape[1], task.max_new_tokens)
        callback = Interleave(ours)
        dataset = Dataset.from_dict({"prompt": prompts * steps, "question": questions.tolist() * steps})
        args, config_lines = trl_config(setup, work, os.path.join(tmp, "trl"), steps)
        trainer = trl.GRPOTrainer(model=model_dir, reward_funcs=VerifierReward(task), args=args,
                                  train_dataset=dataset, processing_class=task.tokenizer, callbacks=[callback])
        trainer.remove_callback(PrinterCallback)
        torch.set_num_threads(threads)  # whatever the trainer's setup did
        if trainer.model.dtype != torch.float32 or trainer.ref_model is None:
            raise RuntimeError("TRL's policy must be fp32 with a reference model, as ours")
        trainer.train()
        optimiser = type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                         else trainer.optimizer).__name__
    split = time_split(ours, repeat) if profile else None  # after the timed rounds: the profiler slows what it sees
    peak = matmul_peak(threads)
    w = setup.warmup
    config_lines.append(f"  optimizer: {optimiser}; model and reference model fp32 from the same local checkpoint "
                        "as ours; reward: our verifier")
    model = ModelShape.of(policy.model)
    return TrlResult(setup, threads, model, work, ours.update_s[w:], callback.trl_s[w:], ours.copy_s[w:],
                     iteration_flops(model, work, ours=True), iteration_flops(model, work, ours=False),
                     peak, trl.__version__, config_lines, split)


def format_trl(result: TrlResult) -> str:
    """The figures of ``bench trl``; the last line is ``speedup_vs_trl: X.XX``."""
    s, m, work, n = result.setup, result.model, result.work, len(result.ours_s)
    ours, theirs, copy = result.ours_median, result.trl_median, statistics.median(result.copy_s)
    ours_rate, trl_rate = result.ours_flops / ours, result.trl_flops / theirs
    frac = ours_rate / result.peak_flops
    lines = [
        f"bench trl: one GRPO iteration, grpo_amp's grpo_update vs TRL {result.trl_version} GRPOTrainer, "
        f"CPU, {result.threads} thread(s), median of {n} interleaved rounds (after {s.warmup} warm-up rounds)",
        f"model: {m.name}, {m.layers} layers, hidden {m.hidden}, {m.heads} heads, MLP {m.intermediate}, "
        f"vocab {m.vocab}, {'tied' if m.tied_head else 'untied'} LM head: {m.n_params:,} parameters",
        f"work per iteration: {work.n_questions} questions x G={work.group_size}, prompts of {work.prompt_len} tokens,"
        f" at most {work.completion_len} completion tokens, beta={s.beta}, 1 inner step (ratio = 1, no old-policy pass)",
        "TRL configured as:",
        *result.trl_config,
        f"ours: {ours * 1e3:8.1f} ms/iteration (min {min(result.ours_s) * 1e3:.1f}, max {max(result.ours_s) * 1e3:.1f});"
        f" {result.ours_flops / 1e9:.2f} GFLOP/iteration -> {ours_rate / 1e9:.1f} GFLOP/s",
        f"TRL:  {theirs * 1e3:8.1f} ms/iteration (min {min(result.trl_s) * 1e3:.1f}, max {max(result.trl_s) * 1e3:.1f});"
        f" {result.trl_flops / 1e9:.2f} GFLOP/iteration -> {trl_rate / 1e9:.1f} GFLOP/s",
        f"ours, with the frozen copy of pi_(n-1) that train() makes per iteration: {(ours + copy) * 1e3:.1f} ms "
        f"(speedup {theirs / (ours + copy):.2f})",
        f"matmul peak (torch.mm fp32, square 1024..2048, {result.threads} thread(s), same process): "
        f"{result.peak_flops / 1e9:.1f} GFLOP/s",
        f"achieved model FLOP/s, ours: {ours_rate / 1e9:.1f} GFLOP/s = {100 * frac:.0f}% of the matmul peak "
        f"(goal >= 40%: {'met' if frac >= 0.4 else 'NOT met'})",
        f"speedup goal >= 4x at equal work: {'met' if result.speedup >= 4 else 'NOT met'}",
    ]
    if result.split is not None:
        lines += format_split(result.split, result.ours_flops, result.peak_flops)
    if max(result.ours_s) > 3 * min(result.ours_s) or max(result.trl_s) > 3 * min(result.trl_s):
        lines.append("warning: the times spread over 3x between rounds: other processes shared the CPU, so the "
                     "figures are unreliable; rerun on an idle machine, or with --threads 1")
    lines.append(f"speedup_vs_trl: {result.speedup:.2f}")
    return "\n".join(lines)


def report(repeat: int = 5, threads: int | None = None) -> str:
    return format_trl(bench_trl(repeat, threads, profile=True))
