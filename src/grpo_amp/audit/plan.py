"""``--config audit="..."``: the override text, checked and turned into the audit's jobs.

    plan = audit_plan("base=/models/base checkpoints=/runs/out task=file task.path=/data/q.jsonl", "default")
    plan.overrides   # Hydra overrides every audit job gets (base= -> audit.base and policy.checkpoint, ...)
    plan.points      # base first (step 0), then the checkpoints in step order, each checked against the base
    plan.inputs      # the files whose change re-runs the audit (a question file)
    audit_results("results", plan.overrides)   # results/audit-<12 hex digits>

``base=X`` is short for ``audit.base=X policy.checkpoint=X``; ``checkpoints=DIR`` for
``audit.checkpoints=[DIR]`` (a TRL output_dir), ``checkpoints=[a,b,...]`` an explicit list in step order.
Everything else is a Hydra override of the usual config (task=..., variant.beta=..., grpo.group_size=...,
experiment=paper_appendix, policy.mc_samples=...).
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from grpo_amp.audit.checkpoints import Point, check_points, find_points
from grpo_amp.io import InputError

_WORKFLOW_KEYS = ("policy", "scale", "results", "run_name")
_WORKFLOW_PREFIXES = ("scale.", "inputs.", "outputs.", "hydra.", "tracking.")


@dataclass(frozen=True)
class AuditPlan:
    overrides: tuple[str, ...] = ()
    points: tuple[Point, ...] = ()
    inputs: tuple[str, ...] = ()


def expand(overrides: list[str]) -> list[str]:
    """The short forms base= and checkpoints= as the config's own keys."""
    out = []
    for o in overrides:
        key, _, value = o.partition("=")
        if key == "base":
            out += [f"audit.base={value}", f"policy.checkpoint={value}"]
        elif key == "checkpoints":
            out.append(f"audit.checkpoints={value}" if value.startswith("[") else f"audit.checkpoints=[{value}]")
        else:
            out.append(o)
    return out


def compose(overrides: list[str], scale: str):
    """The audit's Config: policy=transformer (the causal-LM family) with the user's overrides."""
    from grpo_amp.config import compose_config

    try:
        return compose_config(["policy=transformer", f"scale={scale}", *overrides])
    except Exception as exc:  # Hydra's, OmegaConf's and our ConfigError: all mean "this override is wrong"
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        cause = exc.__cause__
        detail = f": {str(cause).splitlines()[0]}" if cause is not None and str(cause) else ""
        raise InputError(f"--config audit: {first}{detail}") from None


def audit_plan(text: str, scale: str) -> AuditPlan:
    """Split, check and compose ``text``; find and check the checkpoints. InputError (one line) if wrong."""
    try:
        raw = shlex.split(str(text or ""))
    except ValueError as exc:
        raise InputError(f"--config audit={text!r}: {exc}") from None
    if not raw:
        return AuditPlan()
    for o in raw:
        key = o.lstrip("+~").split("=", 1)[0].split("@")[0]
        if "=" not in o or key in _WORKFLOW_KEYS or key.startswith(_WORKFLOW_PREFIXES):
            raise InputError(f"--config audit: {o!r} is not a KEY=VALUE override the audit leaves to you (it sets "
                             f"{', '.join(_WORKFLOW_KEYS)} and {', '.join(p + '*' for p in _WORKFLOW_PREFIXES)} itself)")
    overrides = tuple(expand(raw))
    cfg = compose(list(overrides), scale)
    points = plan_points(cfg)
    check_task(cfg)
    inputs = tuple(p for p in (cfg.task.path,) if p and cfg.task.name == "file")
    return AuditPlan(overrides, tuple(points), inputs)


def plan_points(cfg) -> list[Point]:
    """The checked points of a composed config (the stages call it again: the same list, from files)."""
    from grpo_amp.policies.lm.checkpoint import check_checkpoint_dir

    if not cfg.audit.base:
        raise InputError("--config audit: base= is missing (the base model, pi_ref: a local model directory)")
    try:
        check_checkpoint_dir(cfg.audit.base)
    except InputError as exc:
        raise InputError(str(exc).replace("policy.checkpoint", "audit base", 1)) from None
    points = find_points(cfg.audit.base, cfg.audit.checkpoints)
    check_points(points)
    return points


def check_task(cfg) -> None:
    """The questions can be read (a file with its fields) or generated (a reasoning-gym dataset), before any job."""
    if cfg.task.name == "file":
        from grpo_amp.tasks.file_task import make_verifier, read_questions, shipped_file

        make_verifier(cfg.task.verifier)
        read_questions(cfg.task.path or shipped_file(), cfg.task.prompt_field, cfg.task.answer_field,
                       cfg.task.split_field)
    elif cfg.task.name == "reasoning_gym":
        from grpo_amp.tasks.reasoning_gym_task import generate

        generate(cfg.task.dataset, cfg.task.size, cfg.task.seed)


def audit_results(results: str, overrides: tuple[str, ...] | list[str]) -> str:
    """``{results}/audit-<12 hex digits of the overrides' SHA-1>``: one results root per audit."""
    digest = hashlib.sha1("\0".join(overrides).encode()).hexdigest()[:12]
    return f"{results.rstrip('/')}/audit-{digest}"
