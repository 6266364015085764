"""Benchmarks behind ``grpo-amp bench <name>``.

    grpo-amp bench theory --repeat 5
    grpo-amp bench trl --repeat 20 --threads 2     # needs the bench extra: pip install -e .[bench]

Each benchmark is a function ``(repeat) -> list[Timing]`` registered in :data:`BENCHMARKS`; a new
one only needs a function and a registry entry. Timings are medians over ``repeat`` runs, so one
slow run (a page fault, another process) does not decide the verdict.

``trl`` compares one GRPO iteration of ours with one of TRL's ``GRPOTrainer`` at equal work and
prints figures rather than Timings, so it sits in :data:`REPORTS` (``(repeat, threads) -> text``);
its last line is ``speedup_vs_trl: X.XX``. On a CPU shared with other busy processes, prefer
``--threads 1``: a multi-threaded op waits for its slowest thread, and a thread that loses its core
stalls the whole op (both trainers alike, so the ratio holds better than the times).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from grpo_amp import theory


@dataclass(frozen=True)
class Timing:
    """Median wall time of one task against its goal."""
    task: str
    seconds: float
    goal_s: float

    @property
    def met(self) -> bool:
        return self.seconds <= self.goal_s


def median_time(func: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``func``."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def theory_grid(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded grid of (p_ref, beta): p_ref uniform in [0.001, 0.999], beta log-uniform in [0.05, 20].

    Wide on purpose: it mixes fast convergence, limits at 1, slow approaches and 2-cycles (C4).
    """
    rng = np.random.default_rng(seed)
    p_ref = rng.uniform(0.001, 0.999, n)
    beta = np.exp(rng.uniform(np.log(0.05), np.log(20.0), n))
    return p_ref, beta


# Sizes and goals of the theory benchmark: (what, size, goal in seconds).
THEORY_GOALS = {
    "predicted_limit": (100_000, 1.0),
    "fixed_points_batch": (10_000, 2.0),
    "pos_recurrence": (100_000, 0.2),
}
RECURRENCE_ITERS = 50


def bench_predicted_limit(repeat: int) -> Timing:
    n, goal = THEORY_GOALS["predicted_limit"]
    p_ref, beta = theory_grid(n)
    seconds = median_time(lambda: theory.predicted_limit(p_ref, beta), repeat)
    return Timing(f"predicted_limit, {n:,} (p_ref, beta)", seconds, goal)


def bench_fixed_points_batch(repeat: int) -> Timing:
    n, goal = THEORY_GOALS["fixed_points_batch"]
    p_ref, beta = theory_grid(n)
    seconds = median_time(lambda: theory.fixed_points_batch(p_ref, beta), repeat)
    return Timing(f"fixed_points_batch, {n:,} (p_ref, beta)", seconds, goal)


def bench_pos_recurrence(repeat: int) -> Timing:
    n, goal = THEORY_GOALS["pos_recurrence"]
    p_ref, beta = theory_grid(n)
    seconds = median_time(lambda: theory.pos_recurrence(p_ref, RECURRENCE_ITERS, beta=beta), repeat)
    return Timing(f"pos_recurrence, {n:,} questions x {RECURRENCE_ITERS} iters", seconds, goal)


def bench_theory(repeat: int = 5) -> list[Timing]:
    """The closed-form theory at the sizes an experiment sweep needs."""
    return [bench(repeat) for bench in (bench_predicted_limit, bench_fixed_points_batch, bench_pos_recurrence)]


BENCHMARKS: dict[str, Callable[[int], list[Timing]]] = {
    "theory": bench_theory,
}


def run_benchmark(name: str, repeat: int = 5) -> list[Timing]:
    """Run the benchmark registered as ``name``; a bad name or repeat raises ValueError naming it."""
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark must be one of {', '.join(BENCHMARKS)}; got {name!r}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an integer >= 1; got {repeat!r}")
    return BENCHMARKS[name](repeat)


def format_timings(timings: list[Timing], repeat: int) -> str:
    """A plain-text table: task, median time, goal, met."""
    width = max(len(t.task) for t in timings)
    lines = [f"{'task':<{width}}  {'median s':>9}  {'goal s':>7}  met   (median of {repeat})"]
    for t in timings:
        lines.append(f"{t.task:<{width}}  {t.seconds:>9.3f}  {t.goal_s:>7.2f}  {'yes' if t.met else 'NO'}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- trl: ours against TRL
# `grpo-amp bench trl` prints figures rather than Timings against fixed goals, so it has its own
# registry; the CLI looks there first, then in BENCHMARKS.


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


@dataclass
class TrlResult:
    setup: TrlSetup
    threads: int
    n_params: int
    ours_s: list[float]
    trl_s: list[float]
    copy_s: list[float]        # policy.frozen_copy(): pi_{n-1}, made by train() outside grpo_update
    ours_flops: float
    trl_flops: float
    peak_flops: float
    trl_version: str
    trl_config: list[str]

    @property
    def ours_median(self) -> float:
        return statistics.median(self.ours_s)

    @property
    def trl_median(self) -> float:
        return statistics.median(self.trl_s)

    @property
    def speedup(self) -> float:
        return self.trl_median / self.ours_median


def _require_trl():
    try:
        import datasets  # noqa: F401
        import trl
    except ImportError:
        from grpo_amp.io import InputError

        raise InputError("bench trl needs TRL (trl>=1.16,<1.17, the bench extra): pip install -e .[bench]") from None
    return trl


def matmul_peak(threads: int, sizes=(1024, 1536, 2048), repeat: int = 3) -> float:
    """Best fp32 torch.mm FLOP/s over square sizes, at the current thread count."""
    import torch

    best = 0.0
    for n in sizes:
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b  # warm-up
        for _ in range(repeat):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start))
    return best


def _llama_matmul_params(setup: TrlSetup, vocab: int) -> tuple[int, int]:
    """(weights every token goes through in the layers, LM-head weights): the matmul parameters."""
    d, m = setup.hidden, setup.intermediate
    return setup.layers * (4 * d * d + 3 * d * m), d * vocab


def iteration_flops(setup: TrlSetup, vocab: int, prompt_len: int, completion_len: int, ours: bool) -> float:
    """Model FLOPs of one iteration: 2 per matmul weight per token forward, twice that backward, plus attention.

    Ours: sampling (each prompt once, then T-1 decoding steps over Q*G rows), the reference pass and the
    policy pass (each prompt once, then its G completions), the policy pass backward. TRL: generation
    over Q*G prompt copies, then the reference pass and the policy pass over Q*G (prompt + completion)
    rows, the policy pass backward. Counted at the longest completion (rows finish early only in
    groups, and both sides run every row to the end); masked-out attention scores are not counted.
    """
    body, head = _llama_matmul_params(setup, vocab)
    Q, G, P, T, d = setup.n_questions, setup.group_size, prompt_len, completion_len, setup.hidden
    attn = 4 * d * setup.layers  # per (query, key) pair: q.k and p*v over all heads

    def prefix_pass(rows: int, length: int) -> float:  # causal over `length` tokens, head at the last one
        return rows * (2 * body * length + 2 * head + attn * length * (length + 1) / 2)

    def continuation(rows: int, start: int, steps: int) -> float:  # `steps` tokens after `start` cached ones
        return rows * sum(2 * body + 2 * head + attn * (start + j + 1) for j in range(steps))

    if ours:
        sample = prefix_pass(Q, P) + continuation(Q * G, P, T - 1)
        score = prefix_pass(Q, P) + continuation(Q * G, P, T - 1)  # teacher-forced: same tokens
        return sample + score + 3 * score  # sampling, reference, policy forward + backward (2x)
    generate = prefix_pass(Q * G, P) + continuation(Q * G, P, T - 1)
    score = prefix_pass(Q * G, P + T) + Q * G * 2 * head * T  # full rows, head at the completion
    return generate + score + 3 * score


def _trl_config(setup: TrlSetup, out_dir: str, steps: int, completion_len: int):
    """TRL's GRPOConfig for the same work as ours, and the lines that say how and why."""
    from trl import GRPOConfig as TrlGRPOConfig

    Q, G = setup.n_questions, setup.group_size
    kwargs = dict(
        per_device_train_batch_size=Q * G, gradient_accumulation_steps=1, num_generations=G,
        max_completion_length=completion_len, num_iterations=1, max_steps=steps,
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
        f"  max_completion_length={completion_len}, temperature=1, top_p=1, top_k=0: the same sampling as ours",
        f"  beta={setup.beta}, loss_type=dapo, importance_sampling_level=token, epsilon={setup.clip_eps},"
        " scale_rewards=group: ours with kl_estimator=k3, ratio_level=token, loss_agg=token_mean, std=sample",
        "  gradient_checkpointing=False (TRL's default True recomputes the forward in backward; ours does not)",
        "  bf16=False (TRL's default True when fp16 is unset; ours runs fp32 on the CPU)",
        f"  learning_rate={setup.lr:g} (TRL's default 1e-6; ours), lr_scheduler_type=constant, optim=adamw_torch,"
        " weight_decay=0: Adam's update, as ours; max_grad_norm=0: no clipping, as ours",
        "  shuffle_dataset=False over the same 32 prompts every step; no logging, saving or reporting in the steps",
    ]
    return TrlGRPOConfig(**kwargs), lines


def bench_trl(repeat: int = 5, threads: int | None = None, setup: TrlSetup = TrlSetup()) -> TrlResult:
    """Time one GRPO iteration of ours and of TRL's GRPOTrainer at equal work, interleaved in one process.

    Round r: one TRL training step (generation, reward, reference log-probs, loss, backward, optimizer
    step), then one ``grpo_update`` of ours. The TRL step is timed from the end of the previous round
    to its ``on_step_end`` callback, so it includes TRL's data loading and bookkeeping; ours is the
    call of ``grpo_update`` (sampling from pi_old, reward, advantages, reference log-probs, one inner
    step). Both start from the same weights, saved once to a temporary directory.
    """
    trl = _require_trl()
    import os
    import tempfile
    import warnings

    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1; got {threads!r}")
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never ask a hub
    from datasets import Dataset
    from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
    from transformers.utils import logging as hf_logging

    from grpo_amp.config import (Config, GRPOConfig, KLEstimator, LossAgg, PolicyConfig, PolicyName, RatioLevel,
                                 Std, TaskConfig, VariantConfig)
    from grpo_amp.grpo import trainer as _trainer
    from grpo_amp.policies.transformer import TransformerPolicy
    from grpo_amp.rollout import Rollout
    from grpo_amp.tasks.modarith import ModArithTask

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    task_cfg = TaskConfig(name="modarith", modulus=setup.modulus, n_train=setup.n_questions, n_heldout=0,
                          answer_digits=setup.answer_digits, seed=setup.seed)
    task = ModArithTask(task_cfg)
    tok = task.tokenizer
    questions = task.split_ids("train")
    prompts = [str(p) for p in task.questions.loc[questions.numpy(), "prompt"]]
    P, T = task.prompt_ids.shape[1], task.max_new_tokens
    if tok(prompts)["input_ids"] != task.prompt_ids[questions].tolist():  # TRL tokenizes the text itself
        raise RuntimeError("TRL would see other prompt tokens than ours")

    cfg = Config(variant=VariantConfig(name="bench_trl", beta=setup.beta, std=Std.sample, eps=1e-8),
                 grpo=GRPOConfig(group_size=setup.group_size, inner_steps=1, lr=setup.lr, clip_eps=setup.clip_eps,
                                 kl_estimator=KLEstimator.k3, ratio_level=RatioLevel.token,
                                 loss_agg=LossAgg.token_mean),
                 policy=PolicyConfig(name=PolicyName.transformer, family="transformer", device="cpu"),
                 task=task_cfg, seed=setup.seed)
    steps = setup.warmup + repeat
    with tempfile.TemporaryDirectory(prefix="grpo-amp-bench-trl-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = LlamaConfig(vocab_size=task.vocab_size, hidden_size=setup.hidden,
                             intermediate_size=setup.intermediate, num_hidden_layers=setup.layers,
                             num_attention_heads=setup.heads, num_key_value_heads=setup.heads,
                             max_position_embeddings=64, tie_word_embeddings=False, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        torch.manual_seed(setup.seed)
        model_dir = os.path.join(tmp, "model")
        LlamaForCausalLM(config).save_pretrained(model_dir)
        tok.save_pretrained(model_dir)

        policy = TransformerPolicy.load(model_dir, task, device="cpu")  # the weights TRL loads too
        ref = policy.frozen_copy()
        n_params = sum(p.numel() for p in policy.model.parameters())
        generator = torch.Generator().manual_seed(setup.seed)

        def reward(prompts, completions, completion_ids, question, **_):
            """Our verifier on TRL's completions (lists of ids, <eos> included when drawn)."""
            tokens = torch.full((len(completion_ids), 1, T), task.pad_id, dtype=torch.long)
            mask = torch.zeros((len(completion_ids), 1, T), dtype=torch.bool)
            for i, ids in enumerate(completion_ids):
                tokens[i, 0, : len(ids)] = torch.as_tensor(ids)
                mask[i, 0, : len(ids)] = True
            return task.reward(Rollout(torch.as_tensor(question), tokens, mask))[:, 0].tolist()

        ours_s, trl_s, copy_s = [], [], []

        class Interleave(TrainerCallback):
            """After each TRL step: record it, then run and time one iteration of ours."""

            def on_train_begin(self, *args, **kwargs):
                self.mark = time.perf_counter()

            def on_step_end(self, *args, **kwargs):
                trl_s.append(time.perf_counter() - self.mark)
                start = time.perf_counter()
                old = policy.frozen_copy()
                copied = time.perf_counter()
                _trainer.grpo_update(policy, old, ref, task, questions, cfg, generator)
                done = time.perf_counter()
                copy_s.append(copied - start)
                ours_s.append(done - copied)
                self.mark = time.perf_counter()

        dataset = Dataset.from_dict({"prompt": prompts * steps, "question": questions.tolist() * steps})
        args, config_lines = _trl_config(setup, os.path.join(tmp, "trl"), steps, T)
        from transformers.trainer_callback import PrinterCallback

        trainer = trl.GRPOTrainer(model=model_dir, reward_funcs=reward, args=args, train_dataset=dataset,
                                  processing_class=tok, callbacks=[Interleave()])
        trainer.remove_callback(PrinterCallback)
        torch.set_num_threads(threads)  # whatever the trainer's setup did
        if trainer.model.dtype != torch.float32 or trainer.ref_model is None:
            raise RuntimeError("TRL's policy must be fp32 with a reference model, as ours")
        trainer.train()
        optimiser = type(trainer.optimizer.optimizer if hasattr(trainer.optimizer, "optimizer")
                         else trainer.optimizer).__name__
    peak = matmul_peak(threads)
    w = setup.warmup
    config_lines.append(f"  optimizer: {optimiser}; model and reference model fp32 from the same local checkpoint "
                        "as ours; reward: our verifier")
    return TrlResult(setup, threads, n_params, ours_s[w:], trl_s[w:], copy_s[w:],
                     iteration_flops(setup, task.vocab_size, P, T, ours=True),
                     iteration_flops(setup, task.vocab_size, P, T, ours=False),
                     peak, trl.__version__, config_lines)


def format_trl(result: TrlResult) -> str:
    """The figures of ``bench trl``; the last line is ``speedup_vs_trl: X.XX``."""
    s, n = result.setup, len(result.ours_s)
    ours, theirs, copy = result.ours_median, result.trl_median, statistics.median(result.copy_s)
    ours_rate, trl_rate = result.ours_flops / ours, result.trl_flops / theirs
    frac = ours_rate / result.peak_flops
    lines = [
        f"bench trl: one GRPO iteration, grpo_amp's grpo_update vs TRL {result.trl_version} GRPOTrainer, "
        f"CPU, {result.threads} thread(s), median of {n} interleaved rounds (after {s.warmup} warm-up rounds)",
        f"model: LlamaForCausalLM, {s.layers} layers, hidden {s.hidden}, {s.heads} heads, MLP {s.intermediate}, "
        f"vocab 16, untied LM head: {result.n_params:,} parameters",
        f"work per iteration: {s.n_questions} questions x G={s.group_size}, prompts of 5 tokens, at most "
        f"{s.answer_digits + 1} completion tokens, beta={s.beta}, 1 inner step (ratio = 1, no old-policy pass)",
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
        f"(goal >= 50%: {'met' if frac >= 0.5 else 'NOT met'})",
        f"speedup goal >= 3x at equal work: {'met' if result.speedup >= 3 else 'NOT met'}",
    ]
    if max(result.ours_s) > 3 * min(result.ours_s) or max(result.trl_s) > 3 * min(result.trl_s):
        lines.append("warning: the times spread over 3x between rounds: other processes shared the CPU, so the "
                     "figures are unreliable; rerun on an idle machine, or with --threads 1")
    lines.append(f"speedup_vs_trl: {result.speedup:.2f}")
    return "\n".join(lines)


# Benchmarks that print their own report: name -> (repeat, threads) -> text.
REPORTS: dict[str, Callable[[int, int | None], str]] = {
    "trl": lambda repeat, threads: format_trl(bench_trl(repeat, threads)),
}
