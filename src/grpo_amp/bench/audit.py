"""The audit's cost: PoS of every checkpoint (sampling) and the theory side, and how it grows.

    grpo-amp bench audit --repeat 1 --threads 2

The goal (issue 22): 5 checkpoints of the smoke model (1 layer, 32 dims, modarith) on 64 questions x 32
samples, base included, measured and analysed in under a minute on 2 cores (in process: the Snakemake jobs
add one Python start-up each). Then one checkpoint's sampling time as the model, the questions and the
samples grow, one at a time. Untrained random-init models: they rarely emit <eos>, so every completion runs
to its full length (the most a checkpoint of that size can cost).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from grpo_amp.bench.timing import Timing, format_timings, median_time

GOAL_S = 60.0
SMOKE = dict(n_layer=1, n_embd=32, n_head=2, intermediate_size=64)


def _model_dir(root: Path, task, seed: int = 0, **model) -> Path:
    import torch

    from grpo_amp.config import ModelConfig
    from grpo_amp.policies.transformer import TransformerPolicy

    torch.manual_seed(seed)
    path = root / f"m{seed}-{model['n_layer']}x{model['n_embd']}"
    TransformerPolicy.from_config(task, ModelConfig(**model), seed=seed, device="cpu").save(path)
    task.save(path)
    return path


def _config(base: Path, n_samples: int, n_questions: int):
    from grpo_amp.config import compose_config

    return compose_config(["policy=transformer", "scale=smoke", "task=modarith", "task.modulus=11",
                           f"task.n_train={n_questions}", "task.n_heldout=0", f"audit.base={base}",
                           f"policy.checkpoint={base}", f"policy.mc_samples={n_samples}", "policy.device=cpu"])


def _prepare(root: Path, n_points: int, n_questions: int, **model) -> list[Path]:
    """The base and ``n_points - 1`` checkpoints of one size (random init, different seeds), saved."""
    from grpo_amp.tasks.modarith import ModArithTask

    task = ModArithTask.generate(_config(root, 1, n_questions).task)
    return [_model_dir(root, task, seed=s, **model) for s in range(n_points)]


def _audit(paths: list[Path], n_samples: int, n_questions: int) -> None:
    """Measure every point, then the theory side: the audit's work without Snakemake's process start-ups."""
    import pandas as pd

    from grpo_amp.audit.analysis import analyse
    from grpo_amp.audit.checkpoints import Point
    from grpo_amp.audit.measure import audit_task, measure_point

    cfg = _config(paths[0], n_samples, n_questions)
    task = audit_task(cfg)
    pos = pd.concat([measure_point(cfg, Point(f"p{i}", 10 * i, p), i, task) for i, p in enumerate(paths)])
    if len(paths) > 1:  # one point: its sampling cost alone
        analyse(pos, 10, dict(kl="ref", beta=1.0, beta_prev=0.0, norm="mean_std", eps=0.0, std="population"), 8)


def report(repeat: int, threads: int | None) -> str:
    import torch

    if threads:
        torch.set_num_threads(threads)
    lines = []
    with tempfile.TemporaryDirectory(prefix="grpo-amp-bench-audit-") as tmp:
        root = Path(tmp)
        paths = _prepare(root / "goal", 6, 64, **SMOKE)
        goal = Timing("5 checkpoints + base, smoke model, 64 questions x 32 samples",
                      median_time(lambda: _audit(paths, 32, 64), repeat), GOAL_S)
        lines.append(format_timings([goal], repeat))
        lines.append("one checkpoint (sampling + verifying), one knob at a time from the smoke model, 64 x 32:")
        models = [dict(SMOKE), dict(n_layer=2, n_embd=64, n_head=4, intermediate_size=128),
                  dict(n_layer=4, n_embd=128, n_head=4, intermediate_size=256),
                  dict(n_layer=4, n_embd=256, n_head=8, intermediate_size=512)]
        for i, model in enumerate(models):
            one = _prepare(root / f"model{i}", 1, 64, **model)
            s = median_time(lambda: _audit(one, 32, 64), repeat)
            lines.append(f"  model {model['n_layer']} layers x {model['n_embd']} dims "
                         f"({_params(model) / 1e6:.2f} M params): {s:.2f} s")
        for q in (16, 64, 121):
            one = _prepare(root / f"q{q}", 1, q, **SMOKE)
            lines.append(f"  questions {q}: {median_time(lambda: _audit(one, 32, q), repeat):.2f} s")
        one = _prepare(root / "n", 1, 64, **SMOKE)
        for n in (8, 32, 128):
            lines.append(f"  samples {n}: {median_time(lambda: _audit(one, n, 64), repeat):.2f} s")
    return "\n".join(lines)


def _params(model: dict) -> int:
    d, f, L, V = model["n_embd"], model["intermediate_size"], model["n_layer"], 16
    return L * (4 * d * d + 3 * d * f) + 2 * V * d
