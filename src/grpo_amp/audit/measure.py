"""Monte Carlo PoS of every question under one checkpoint, with its Wilson interval.

    task = audit_task(cfg)                            # the questions and the verifier (the base's tokenizer)
    rows = measure_point(cfg, point, iteration, task) # POS_COLUMNS + step: one row per question

Every checkpoint draws from the same seeded stream (cfg.seed + pos.MC_SEED_OFFSET): common random
numbers, so a difference between checkpoints is the weights', not the draw's. Hugging Face generate
(batched: questions x samples split into calls of at most ``audit.max_batch`` sequences), or vLLM on a
CUDA machine where it is importable (``audit.backend``: auto, hf, vllm; open-ended tasks only).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from grpo_amp.audit.checkpoints import Point
from grpo_amp.config import OPEN_ENDED_TASKS, Config
from grpo_amp.io import InputError
from grpo_amp.analysis.stats import wilson_interval
from grpo_amp.grpo.pos import MC_SEED_OFFSET
from grpo_amp.schema import POS_COLUMNS

log = logging.getLogger(__name__)
AUDIT_POS_COLUMNS = [*POS_COLUMNS, "step", "successes", "n_samples"]


def audit_task(cfg: Config):
    """The task the audit measures: the base's own modarith task where it is our reference directory, else
    generated from ``task``; a file's or reasoning-gym's questions with the base model's tokenizer."""
    base = Path(cfg.audit.base)
    if cfg.task.name in OPEN_ENDED_TASKS:
        from grpo_amp.tasks.base import load_tokenizer
        from grpo_amp.tasks.file_task import open_ended_task

        return open_ended_task(cfg.task, load_tokenizer(base))
    from grpo_amp.tasks.modarith import ModArithTask

    if (base / "task.json").is_file() and (base / "questions.csv").is_file():
        from grpo_amp.policies import task_kind

        if task_kind(base) == "modarith":
            return ModArithTask.load(base)
    return ModArithTask.generate(cfg.task)


def backend_for(cfg: Config, device: str) -> str:
    """"vllm" on CUDA where vLLM imports and the task is open-ended (audit.backend=auto), else "hf"."""
    choice = cfg.audit.backend
    if choice == "hf":
        return "hf"
    usable = device.startswith("cuda") and cfg.task.name in OPEN_ENDED_TASKS
    if usable:
        try:
            import vllm  # noqa: F401
        except ImportError:
            usable = False
    if choice == "vllm" and not usable:
        raise InputError("audit.backend=vllm needs vLLM installed, a CUDA device and an open-ended task "
                         "(task=file or reasoning_gym)")
    return "vllm" if usable else "hf"


def successes_hf(policy, task, n_samples: int, seed: int, max_batch: int) -> np.ndarray:
    """Verified completions per question out of ``n_samples``: (Q,) counts, HF generate in batches."""
    import torch

    from grpo_amp.grpo.pos import pos_mc

    device = next(policy.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed + MC_SEED_OFFSET)
    questions = torch.arange(len(task.questions), device=device)
    per_call = min(n_samples, max_batch)               # samples per question per call
    q_per_call = max(1, max_batch // per_call)          # questions per call
    from tqdm import tqdm

    k = []
    for start in tqdm(range(0, len(questions), q_per_call), desc="PoS", unit="batch", mininterval=5):
        chunk = questions[start:start + q_per_call]
        pos, _, _ = pos_mc(policy, task, chunk, n_samples, generator, chunk=per_call)
        k.append(np.rint(pos * n_samples))
    return np.concatenate(k)


def successes_vllm(path: Path, task, n_samples: int, seed: int, temperature: float) -> np.ndarray:
    """The same counts with vLLM's sampler (CUDA): n samples per prompt from the checkpoint's weights."""
    from vllm import LLM, SamplingParams

    llm = LLM(model=str(path), tokenizer=str(path) if (path / "tokenizer_config.json").is_file() else None,
              seed=seed, enforce_eager=True, gpu_memory_utilization=0.5)
    params = SamplingParams(n=n_samples, temperature=temperature, top_p=1.0, top_k=-1,
                            max_tokens=task.max_new_tokens, seed=seed + MC_SEED_OFFSET)
    outputs = llm.generate([{"prompt_token_ids": list(ids)} for ids in task.prompt_token_ids], params, use_tqdm=False)
    return np.array([sum(task.score(o.text, q) for o in out.outputs) for q, out in enumerate(outputs)], float)


def measure_point(cfg: Config, point: Point, iteration: int, task=None) -> pd.DataFrame:
    """PoS of every question under the weights of ``point``: AUDIT_POS_COLUMNS, one row per question."""
    from grpo_amp.devices import resolve_device
    from grpo_amp.policies import load_lm_policy

    task = task if task is not None else audit_task(cfg)
    device = resolve_device(cfg.policy.device)
    n = cfg.policy.mc_samples
    backend = backend_for(cfg, device)
    log.info("%s (step %d): %d questions x %d samples, %s on %s", point.path, point.step, len(task.questions), n,
             backend, device)
    if backend == "vllm":
        k = successes_vllm(point.path, task, n, cfg.seed, cfg.policy.temperature)
    else:
        policy = load_lm_policy(point.path, task, device=device, temperature=cfg.policy.temperature)
        policy.requires_grad_(False)
        k = successes_hf(policy, task, n, cfg.seed, cfg.audit.max_batch)
    lo, hi = wilson_interval(k, n)
    q = task.questions
    return pd.DataFrame({"question": q["question"].to_numpy(), "seed": cfg.seed, "split": q["split"].to_numpy(),
                         "iteration": iteration, "pos": k / n, "pos_lo": lo, "pos_hi": hi, "method": "mc",
                         "kl_in_correct": np.nan, "n_correct": np.nan, "step": point.step, "successes": k.astype(int),
                         "n_samples": n})[AUDIT_POS_COLUMNS]
