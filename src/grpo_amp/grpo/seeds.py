"""A run over seeds: each seed's GRPO iterations from pi_ref, PoS measured after every iteration.

    trained = train_seeds(cfg, n_seeds, ref_dir, out_dir, device="cpu")   # Trained: pos, metrics, c1, timing, redraws, e3

Seed s runs with cfg.seed + s. A family whose seeds share no parameters (``FamilySpec.seeds_as_rows``:
the tabular one) trains every seed at once as one table of seeds x questions, row s*N + q being question
q of seed s; the others train one seed after the other in this process (start-up, not arithmetic, is
the cost at these sizes). Either way each seed's states go to ``paths.iteration_dir(out_dir, n, s)``.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pandas as pd

from grpo_amp import paths, registry
from grpo_amp.config import Config
from grpo_amp.grpo.pos import PosMeter
from grpo_amp.grpo.updates import Loop, loop_of
from grpo_amp.policies import load_reference


@dataclasses.dataclass
class Trained:
    """What one training pass measured: PoS rows, metrics and C1 rows (``seed`` columns filled)."""
    pos: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    metrics: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    c1: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    timing: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    redraws: list[pd.DataFrame] = dataclasses.field(default_factory=list)  # dynamic sampling only
    e3: list[dict] = dataclasses.field(default_factory=list)  # E3's tempering control per seed (e3_controls.csv)


def train_seeds(cfg: Config, n_seeds: int, ref_dir: Path, out_dir: Path, device: str = "cpu",
                log_metrics=None) -> Trained:
    """``n_seeds`` runs of ``cfg.policy``'s loop from the reference in ``ref_dir``; states saved under ``out_dir``."""
    loop = loop_of(cfg.policy.name.value)
    if registry.FAMILIES[cfg.policy.family].seeds_as_rows:
        return _seeds_as_rows(cfg, loop, n_seeds, ref_dir, out_dir, log_metrics)
    return _seed_by_seed(cfg, loop, n_seeds, ref_dir, out_dir, device, log_metrics)


def _train_once(cfg: Config, loop: Loop, policy, ref, task, meter, save_dir, log_metrics=None) -> Trained:
    """Iterations from ``policy`` = pi_ref; PoS of every question after each one (iteration 0 = pi_ref)."""
    out = Trained(pos=[meter(ref, iteration=0)])

    def save_iteration(n, pi):
        out.pos.append(meter(pi, iteration=n))
        if cfg.policy.save_checkpoints or n == cfg.grpo.iterations:  # the final policy is always kept
            save_dir(n, pi)

    history = loop(policy, ref, task, cfg, save_iteration=save_iteration, log_metrics=log_metrics)
    out.metrics.append(history.metrics_frame())
    out.c1.append(history.c1_frame())
    out.timing.append(history.timing_frame())
    if history.redraws_frame() is not None:
        out.redraws.append(history.redraws_frame())
    return out


def _seeds_as_rows(cfg: Config, loop: Loop, n_seeds: int, ref_dir: Path, out_dir: Path, log_metrics=None) -> Trained:
    """Every seed in one table: row s*N + q is question q of seed cfg.seed + s."""
    base, ref_one = load_reference(cfg.policy.family, ref_dir)
    n = len(base.questions)
    task = base.replicate(n_seeds)
    ref = ref_one.replicate(n_seeds, task)
    ref.requires_grad_(False)
    policy = ref.replicate(1, task)
    policy.requires_grad_(True)
    meter = PosMeter(ref, task, cfg.policy.pos_method.value, cfg.policy.mc_samples, cfg.seed)

    def save_dir(it, pi):
        for s in range(n_seeds):
            pi.rows(s * n, (s + 1) * n, base).save(paths.iteration_dir(out_dir, it, s))

    out = _train_once(cfg, loop, policy, ref, task, meter, save_dir, log_metrics)
    # back from replicated rows to (seed, question); metrics are pooled over the seeds' rows
    for frame in (*out.pos, *out.c1, *out.redraws):
        frame["seed"] = cfg.seed + frame["question"] // n
        frame["question"] = frame["question"] % n
    for frame in (*out.metrics, *out.timing):
        frame["seed"] = cfg.seed if n_seeds == 1 else -1
    return out


def _seed_by_seed(cfg: Config, loop: Loop, n_seeds: int, ref_dir: Path, out_dir: Path, device: str,
                  log_metrics=None) -> Trained:
    """One training per seed, each from pi_ref, in this process."""
    family = cfg.policy.family
    options = {"device": device, "temperature": cfg.policy.temperature}  # a file task's HF policy samples at it
    task, ref = load_reference(family, ref_dir, **options)
    ref.requires_grad_(False)
    out = Trained()
    for s in range(n_seeds):
        cfg_s = dataclasses.replace(cfg, seed=cfg.seed + s)
        policy = copy.deepcopy(ref).requires_grad_(True)  # pi_0 = pi_ref (as read from ref_dir, not read again)
        meter = PosMeter(ref, task, cfg.policy.pos_method.value, cfg.policy.mc_samples, cfg_s.seed)
        one = _train_once(cfg_s, loop, policy, ref, task, meter,
                          lambda it, pi: pi.save(paths.iteration_dir(out_dir, it, s)),
                          log_metrics and (lambda it, m: log_metrics(it, _per_seed(m, cfg_s.seed))))
        for frame in (*one.pos, *one.metrics, *one.c1, *one.timing, *one.redraws):
            frame["seed"] = cfg_s.seed
        out.redraws += one.redraws
        if _has_e3_controls(cfg, task):
            from grpo_amp.grpo.e3_controls import tempered_reference

            out.e3.append({"seed": cfg_s.seed, **tempered_reference(ref, policy, task)})
        out.pos += one.pos
        out.metrics += one.metrics
        out.c1 += one.c1
        out.timing += one.timing
    return out


def _has_e3_controls(cfg: Config, task) -> bool:
    """E3's tempering control is measured for a policy some control run is a control of, on a listable modarith task."""
    from grpo_amp.tasks.modarith import ModArithTask

    name = cfg.policy.name.value
    return isinstance(task, ModArithTask) and any(s.control_of == name for s in registry.POLICY_TABLE)


def _per_seed(metrics: dict, seed: int) -> dict:
    """One MLflow series per seed: ``seed3/loss`` at step = iteration."""
    return {"iteration": metrics["iteration"], **{f"seed{seed}/{k}": v for k, v in metrics.items() if k != "iteration"}}
