"""Where every stage reads and writes: one table shared by the Snakefile and the stages.

Patterns take ``results`` (root), ``scale``, ``family`` (tabular | transformer | twin, with ``-draw<k>`` for task
draw k: reference_name), ``policy`` and
``run`` (a run name, see ``grpo_amp.study.runs``). The Snakefile fills them with wildcards.
"""

from __future__ import annotations

from pathlib import Path

from grpo_amp import registry

TRACKING = "{results}/{scale}/tracking.json"
REFERENCE = "{results}/{scale}/reference/{family}"
TRAIN = "{results}/{scale}/train/{policy}/{run}"
POS = "{results}/{scale}/pos/{policy}/{run}.csv"
PREDICT = "{results}/{scale}/predict/{policy}/{run}.csv"
CURVES = "{results}/{scale}/curves/{policy}/{run}.csv"
RUNS = "{results}/{scale}/runs.csv"
CLAIMS_CSV = "{results}/{scale}/claims.csv"
CLAIMS_MD = "{results}/{scale}/claims.md"
FIGURE = "{results}/{scale}/figures/{name}.png"
REPORT = "{results}/{scale}/report.html"
LOG = "{results}/{scale}/logs/{rule}/{name}.log"
BENCHMARK = "{results}/{scale}/benchmarks/{rule}/{name}.tsv"


LADDER = "{results}/{scale}/ladder.csv"
FACTORIAL = "{results}/{scale}/factorial.csv"      # E5's ladder as a 2 x 2 x 2 factorial, per cell
ATTRIBUTION = "{results}/{scale}/attribution.csv"  # its main effects, Shapley parts and interactions
STUDY_RUN = "{results}/{scale}/study_run.json"  # the study's MLflow run (compare makes it, figures logs to it)
ITERATIONS = "{results}/{scale}/iterations.csv"  # per run and iteration: E_q |p_n - C3|, mean PoS
DRAWS = "{results}/{scale}/draws.csv"  # per draw policy: its numbers over task draws (grpo_amp.analysis.draws)


SIGNED = "-signed"  # a reference on the modarith task whose answers may start with "+" (task.plus_sign)


def reference_name(family: str, draw: int = 0, plus_sign: bool = False) -> str:
    """The reference directory's name (REFERENCE's ``family`` field): ``transformer``, ``transformer-draw2``
    for task draw 2 (its own task and pi_ref, config.draw_seed), ``transformer-signed`` for the task with signed
    answers (its own pi_ref, trained on them)."""
    return family + (f"-draw{draw}" if draw else "") + (SIGNED if plus_sign else "")


def parse_reference_name(name: str) -> tuple[str, int, bool]:
    """(family, draw, plus_sign) of a reference directory's name: the inverse of reference_name."""
    plus_sign = name.endswith(SIGNED)
    family, _, draw = name.removesuffix(SIGNED).partition("-draw")
    return family, int(draw or 0), plus_sign


def iteration_dir(train_dir: str | Path, n: int, seed_index: int = 0) -> Path:
    """Where iteration ``n`` of the run's ``seed_index``-th seed keeps its policy state."""
    return Path(train_dir) / f"seed_{seed_index:02d}" / f"iter_{n:03d}"


def path(pattern: str, cfg=None, **fields) -> Path:
    """Fill ``pattern`` from a Config (results, scale, policy, run, family) and explicit fields."""
    if cfg is not None:
        policy = cfg.policy.name.value
        defaults = {"results": cfg.results, "scale": cfg.scale.name, "policy": policy,
                    "run": cfg.run_name or cfg.variant.name,
                    "family": reference_name(registry.family_of(fields.get("policy", policy)), cfg.task.draw,
                                             cfg.task.plus_sign)}
        fields = {**defaults, **fields}
    return Path(pattern.format(**fields))
