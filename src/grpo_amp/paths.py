"""Where every stage reads and writes: one table shared by the Snakefile and the stages.

Patterns take ``results`` (root), ``scale``, ``family`` (tabular | transformer), ``policy`` and
``run`` (a run name, see ``grpo_amp.runs``). The Snakefile fills them with wildcards.
"""

from __future__ import annotations

from pathlib import Path

TRACKING = "{results}/{scale}/tracking.json"
REFERENCE = "{results}/{scale}/reference/{family}"
TRAIN = "{results}/{scale}/train/{policy}/{run}"
POS = "{results}/{scale}/pos/{policy}/{run}.csv"
PREDICT = "{results}/{scale}/predict/{policy}/{run}.csv"
RUNS = "{results}/{scale}/runs.csv"
CLAIMS_CSV = "{results}/{scale}/claims.csv"
CLAIMS_MD = "{results}/{scale}/claims.md"
FIGURE = "{results}/{scale}/figures/{name}.png"
REPORT = "{results}/{scale}/report.html"
LOG = "{results}/{scale}/logs/{rule}/{name}.log"
BENCHMARK = "{results}/{scale}/benchmarks/{rule}/{name}.tsv"

POS_MEASURED_IN_TRAINING = "pos.csv"  # in a train dir, when per-iteration checkpoints are off

FAMILY_OF_POLICY = {"tabular_exact": "tabular", "tabular_sgd": "tabular", "transformer": "transformer"}
REFERENCE_POLICY = {"tabular": "tabular_exact", "transformer": "transformer"}  # whose config builds pi_ref


def iteration_dir(train_dir: str | Path, n: int) -> Path:
    return Path(train_dir) / f"iter_{n:03d}"


def path(pattern: str, cfg=None, **fields) -> Path:
    """Fill ``pattern`` from a Config (results, scale, policy, run, family) and explicit fields."""
    if cfg is not None:
        policy = cfg.policy.name.value
        defaults = {"results": cfg.results, "scale": cfg.scale.name, "policy": policy,
                    "run": cfg.run_name or cfg.variant.name, "family": FAMILY_OF_POLICY[policy]}
        fields = {**defaults, **fields}
    return Path(pattern.format(**fields))
