"""Run names: one Snakemake ``{run}`` wildcard value per GRPO run, and the Hydra overrides it means.

A run is a named variant, optionally with one swept knob appended (``grpo_amp.registry.SWEEPS``):

    mean_std_ref            the variant as conf/variant/mean_std_ref.yaml defines it
    mean_std_ref-beta0.5    ... with variant.beta=0.5                (C7 beta sweep)
    mean_std_ref-G32        ... with grpo.group_size=32              (E1/E2 group-size sweep)
    mean_std_ref-M16        ... with grpo.inner_steps=16             (E2/E5 inner-step sweep)
    mean_std_ref-klk3       ... with grpo.kl_estimator=k3            (E2 estimator sweep)
    mean_std_ref-clip0.2    ... with grpo.clip_eps=0.2               (E2 clipping sweep)
    mean_std_ref-m4         ... with grpo.groups_per_question=4      (E5 R4: groups per question)
    mean_std_ref-draw2      ... with task.draw=2: task draw 2's task and pi_ref (issue 20; draws.csv only)
    mean_std_ref-sign1      ... with task.plus_sign=1: answers may start with "+", its own pi_ref (C2)

The Snakefile lists the runs of a scale with ``study_runs``; a stage turns its run name back into
overrides with ``run_overrides``. Both read the same table, so they cannot disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from grpo_amp import registry
from grpo_amp.config import CONF_DIR, StudyConfig
from grpo_amp.io import InputError

_RUN = re.compile(rf"^(?P<variant>{registry.VARIANT_PATTERN})"
                  rf"(?:-(?P<tag>{'|'.join(map(re.escape, registry.SWEEP_OF_TAG))})(?P<value>[A-Za-z0-9_.+-]+))?$")


def override_value(key: str, value) -> str:
    """The Hydra override ``key="value"``: quoted, so that a path with "=", "," or spaces stays one value."""
    return f"{key}={json.dumps(str(value))}"


def override_list(key: str, items) -> str:
    """The Hydra override setting the list ``key`` to ``items``, each quoted as in ``override_value``."""
    return f"{key}=[" + ",".join(json.dumps(str(i)) for i in items) + "]"


def run_name(variant: str, sweep: str | None = None, value=None) -> str:
    if sweep is None:
        return variant
    return f"{variant}-{registry.SWEEPS[sweep].tag}{registry.SWEEPS[sweep].format(value)}"


def parse_run(name: str) -> tuple[str, str, str | None]:
    """(variant, sweep, raw value): sweep is "variant" for a plain run."""
    m = _RUN.match(name)
    if not m:
        raise InputError(f"run name {name!r} is not {registry.RUN_SYNTAX}")
    if m["tag"] is None:
        return m["variant"], "variant", None
    sweep = registry.SWEEPS[registry.SWEEP_OF_TAG[m["tag"]]]
    if not re.fullmatch(sweep.value_pattern, m["value"]):  # the same pattern as Snakemake's wildcard
        raise InputError(f"run name {name!r} is not {registry.RUN_SYNTAX}: {m['value']!r} is not a value of "
                         f"{sweep.name} ({sweep.value_pattern})")
    return m["variant"], sweep.name, m["value"]


def run_overrides(name: str) -> list[str]:
    """Hydra overrides that turn the default config into run ``name``."""
    variant, sweep, value = parse_run(name)
    out = [f"variant={variant}", f"run_name={name}"]
    if sweep != "variant":
        out.append(f"{registry.SWEEPS[sweep].key}={value}")
    return out


def load_study(scale: str, conf_dir: Path = CONF_DIR) -> StudyConfig:
    """conf/scale/<scale>.yaml's study, checked against its schema (StudyConfig) like every composed config."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    path = conf_dir / "scale" / f"{scale}.yaml"
    if not path.is_file():
        raise InputError(f"unknown scale {scale!r}: no {path}")
    try:
        node = OmegaConf.merge(OmegaConf.structured(StudyConfig), OmegaConf.load(path).study)
        study = OmegaConf.to_object(node)
    except (OmegaConfBaseException, ValueError) as exc:
        raise InputError(f"{path}: {str(exc).splitlines()[0]}") from None
    named = {"variants": study.variants, "sweep_variant": [study.sweep_variant],
             **{f"variants_of.{p}": v for p, v in study.variants_of.items()},
             **{f"sweep_variant_of.{p}.{s}": [v] for p, by in study.sweep_variant_of.items() for s, v in by.items()}}
    for where, variants in named.items():
        for v in variants:
            if not (conf_dir / "variant" / f"{v}.yaml").is_file():
                raise InputError(f"{path}: study.{where}: unknown variant {v!r} (no conf/variant/{v}.yaml)")
    for policy in study.policies:  # an estimator the policy's loop cannot compute fails here, not in its job
        if registry.policy(policy).advantage == "trl" and "estimator" in _sweeps(study, policy):
            from grpo_amp.trl_family.settings import trl_estimator

            where = (f"sweep_values_of.{policy}.estimator" if "estimator" in study.sweep_values_of.get(policy, {})
                     else "advantage_sweep")
            for name in sweep_values(study, policy, "estimator"):
                try:
                    trl_estimator(name)
                except InputError as exc:
                    raise InputError(f"{path}: study.{where}: {exc}") from None
    return study


def study_runs(scale: str, policy: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Every run name the scale makes for ``policy`` (empty if the scale leaves the policy out)."""
    return runs_of_study(load_study(scale, conf_dir), policy)


def runs_of_study(study: StudyConfig, policy: str) -> list[str]:
    """The run names of ``policy`` in a study: its variants, then its sweeps around ``sweep_variant``."""
    if policy not in study.policies:
        return []
    variants = list(study.variants_of.get(policy, study.variants))
    names = list(variants)
    bases = study.sweep_variant_of.get(policy, {})
    for sweep in _sweeps(study, policy):
        base = bases.get(sweep, study.sweep_variant)
        if base in variants or sweep in bases:  # around a variant the policy runs, or one named for this sweep
            names += [run_name(base, sweep, v) for v in sweep_values(study, policy, sweep)]
    return list(dict.fromkeys(names))


def _sweeps(study: StudyConfig, policy: str) -> list[str]:
    """The sweeps ``policy`` runs in ``study``, in the sweep table's order."""
    own = registry.policy(policy).sweeps
    chosen = study.sweeps_of.get(policy, own)
    return [s.name for s in registry.SWEEP_TABLE if s.name in chosen and s.name in own]


def sweep_values(study: StudyConfig, policy: str, sweep: str) -> list:
    """The values of ``sweep`` that ``policy`` runs: its own list (``sweep_values_of``), else the study's."""
    own = study.sweep_values_of.get(policy, {})
    return list(own[sweep]) if sweep in own else list(getattr(study, registry.SWEEPS[sweep].values_field))


def draw_runs_of_study(study: StudyConfig, policy: str) -> list[str]:
    """The run names of ``policy`` on task draws 1 .. task_draws - 1: its base variant's (``sweep_variant``) only,
    and only for a policy of ``draw_policies`` the study runs. Draw 0 is the plain run (in runs_of_study)."""
    if policy not in study.policies or policy not in study.draw_policies:
        return []
    return [run_name(study.sweep_variant, "draw", k) for k in range(1, study.task_draws)]


def draw_of(name: str) -> int:
    """The task draw a run name is on (0 for every run that is not a draw run)."""
    _, sweep, value = parse_run(name)
    return int(value) if sweep == "draw" else 0


def signed_of(name: str) -> bool:
    """Whether a run is on the modarith task with signed answers (``-sign1``: task.plus_sign, its own pi_ref)."""
    return parse_run(name)[1] == "plus_sign"


def seeds_of(study: StudyConfig, policy: str) -> int:
    """How many seeds a run of ``policy`` makes: the study's count if it samples, else one."""
    return study.seeds if registry.policy(policy).sampled else 1


# --------------------------------------------------------------------------- the LM side's overrides
# What the workflow sets itself for every job: an lm override may not move it (policy.checkpoint, variant.beta
# and the like are fine; the run's own sweep value is applied after the lm overrides and wins).
_WORKFLOW_KEYS = ("policy", "scale", "variant", "results", "run_name")          # exactly these keys
_WORKFLOW_PREFIXES = ("scale.", "inputs.", "outputs.", "hydra.", "tracking.")  # and everything under these


@dataclass(frozen=True)
class LMOverrides:
    """``--config lm="..."``: Hydra overrides for the transformer family's jobs, and the files they read."""
    overrides: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()  # policy.checkpoint and task.path, where set: the reference rule's inputs


def reject_workflow_keys(overrides, option: str, keys: tuple[str, ...], who: str) -> None:
    """Every override a user hands over (``--config <option>=...``) is KEY=VALUE and leaves the keys the
    workflow sets itself alone (``keys``, and everything under _WORKFLOW_PREFIXES): InputError naming it."""
    for o in overrides:
        key = o.lstrip("+~").split("=", 1)[0].split("@")[0]
        if "=" not in o or key in keys or key.startswith(_WORKFLOW_PREFIXES):
            raise InputError(f"--config {option}: {o!r} is not a KEY=VALUE override the {who} leaves to you (it sets "
                             f"{', '.join(keys)} and {', '.join(p + '*' for p in _WORKFLOW_PREFIXES)} itself)")


def lm_overrides(text: str, scale: str) -> LMOverrides:
    """Split and check ``text`` by composing it for policy=transformer; InputError (one line) if it is wrong."""
    import shlex

    try:
        overrides = tuple(shlex.split(str(text or "")))
    except ValueError as exc:
        raise InputError(f"--config lm={text!r}: {exc}") from None
    if not overrides:
        return LMOverrides()
    reject_workflow_keys(overrides, "lm", _WORKFLOW_KEYS, "workflow")
    from grpo_amp.config import compose_config

    try:
        cfg = compose_config(["policy=transformer", f"scale={scale}", *overrides])
    except Exception as exc:  # Hydra's, OmegaConf's and our ConfigError: all mean "this override is wrong"
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
        cause = exc.__cause__
        detail = f": {str(cause).splitlines()[0]}" if cause is not None and str(cause) else ""
        raise InputError(f"--config lm: {first}{detail}") from None
    inputs = tuple(str(Path(p).expanduser()) for p in (cfg.policy.checkpoint, cfg.task.path) if p)
    return LMOverrides(overrides, inputs)


def lm_results(results: str, overrides: tuple[str, ...] | list[str]) -> str:
    """The results root of a study with these lm overrides: ``results`` itself without any, else
    ``{results}/lm-<12 hex digits of their SHA-1>``: a user's study never shares paths with the default one."""
    if not overrides:
        return results
    import hashlib

    digest = hashlib.sha1("\0".join(overrides).encode()).hexdigest()[:12]
    return f"{results.rstrip('/')}/lm-{digest}"
