"""Run names: one Snakemake ``{variant}`` wildcard value per GRPO run, and the Hydra overrides it means.

A run is a named variant, optionally with one swept knob appended:

    mean_std_ref            the variant as conf/variant/mean_std_ref.yaml defines it
    mean_std_ref-beta0.5    ... with variant.beta=0.5          (C7 beta sweep)
    mean_std_ref-G32        ... with grpo.group_size=32        (E1/E2 group-size sweep)
    mean_std_ref-M16        ... with grpo.inner_steps=16       (E2 inner-step sweep)
    mean_std_ref-klk3       ... with grpo.kl_estimator=k3      (E2 estimator sweep)
    mean_std_ref-clip0.2    ... with grpo.clip_eps=0.2         (E2 clipping sweep)

The Snakefile lists the runs of a scale with ``study_runs``; a stage turns its run name back into
overrides with ``run_overrides``. Both read the same table, so they cannot disagree.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

# sweep name -> (run-name tag, Hydra key, StudyConfig list, practice policies only?)
SWEEPS = {
    "beta": ("beta", "variant.beta", "beta_sweep", False),
    "group_size": ("G", "grpo.group_size", "group_sweep", True),
    "inner_steps": ("M", "grpo.inner_steps", "inner_sweep", True),
    "kl_estimator": ("kl", "grpo.kl_estimator", "estimator_sweep", True),
    "clip_eps": ("clip", "grpo.clip_eps", "clip_sweep", True),
}
PRACTICE_POLICIES = ("tabular_sgd", "transformer")  # the exact control has no G, M, estimator or clipping
_RUN = re.compile(r"^(?P<variant>[A-Za-z0-9_]+)(?:-(?P<tag>beta|G|M|kl|clip)(?P<value>[A-Za-z0-9.]+))?$")
_TAG_TO_SWEEP = {tag: name for name, (tag, *_rest) in SWEEPS.items()}
CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_name(variant: str, sweep: str | None = None, value=None) -> str:
    if sweep is None:
        return variant
    return f"{variant}-{SWEEPS[sweep][0]}{_fmt(value)}"


def parse_run(name: str) -> tuple[str, str, str | None]:
    """(variant, sweep, raw value): sweep is "variant" for a plain run."""
    m = _RUN.match(name)
    if not m:
        raise ValueError(f"run name {name!r} is not VARIANT or VARIANT-{{beta|G|M|kl|clip}}VALUE")
    if m["tag"] is None:
        return m["variant"], "variant", None
    return m["variant"], _TAG_TO_SWEEP[m["tag"]], m["value"]


def run_overrides(name: str) -> list[str]:
    """Hydra overrides that turn the default config into run ``name``."""
    variant, sweep, value = parse_run(name)
    out = [f"variant={variant}", f"run_name={name}"]
    if sweep != "variant":
        out.append(f"{SWEEPS[sweep][1]}={value}")
    return out


def load_study(scale: str, conf_dir: Path = CONF_DIR):
    path = conf_dir / "scale" / f"{scale}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown scale {scale!r}: no {path}")
    return OmegaConf.load(path).study


def study_runs(scale: str, policy: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """Every run name the scale makes for ``policy`` (empty if the scale leaves the policy out)."""
    return runs_of_study(load_study(scale, conf_dir), policy)


def runs_of_study(study, policy: str) -> list[str]:
    """The same from a study node (an OmegaConf node or ``config.StudyConfig``)."""
    if policy not in study.policies:
        return []
    variants = list(study.transformer_variants if policy == "transformer" else study.variants)
    names = list(variants)
    base = study.sweep_variant
    if policy == "transformer" and base not in variants:
        return names  # the transformer sweeps only around a variant it runs
    for sweep, (_tag, _key, field, practice_only) in SWEEPS.items():
        if practice_only and policy not in PRACTICE_POLICIES:
            continue
        if policy == "transformer" and sweep not in study.transformer_sweeps:
            continue
        names += [run_name(base, sweep, v) for v in getattr(study, field)]
    return list(dict.fromkeys(names))
