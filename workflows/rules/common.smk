import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# Against the Snakefile's directory, not the working directory: `--directory <tmp>` must still find it.
configfile: str(Path(workflow.basedir) / "workflows" / "config" / "config.yaml")


validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, even without pip install -e
from grpo_amp import paths  # noqa: E402
from grpo_amp.runs import run_overrides, study_runs  # noqa: E402

def flag(name, default=True):
    return str(config.get(name, default)).lower() == "true"


SCALE = config["scale"]
RESULTS = config["results"]
POLICIES = ["tabular_exact", "tabular_sgd", "transformer"]
RUNS = {policy: study_runs(SCALE, policy) for policy in POLICIES}
RUNS = {policy: runs for policy, runs in RUNS.items() if runs}
FIGURE_NAMES = ["trajectories", "per_question", "fixed_points", "normalisation", "regularisation",
                "practice_gap", "heldout"]
ENV = "../../environment.yml"


def fill(pattern, **fields):
    return pattern.format(results=RESULTS, scale=SCALE, **fields)


TRACKING_JSON = fill(paths.TRACKING)
CLAIMS_CSV = fill(paths.CLAIMS_CSV)
CLAIMS_MD = fill(paths.CLAIMS_MD)
RUNS_CSV = fill(paths.RUNS)
FIGURES = [fill(paths.FIGURE, name=name) for name in FIGURE_NAMES]
ALL_PREDICT = [fill(paths.PREDICT, policy=p, run=r) for p, runs in RUNS.items() for r in runs]
ALL_TRAIN = [fill(paths.TRAIN, policy=p, run=r) for p, runs in RUNS.items() for r in runs]


def log_path(rule, name):
    return fill(paths.LOG, rule=rule, name=name)


def bench_path(rule, name):
    return fill(paths.BENCHMARK, rule=rule, name=name)


def stage(module, *overrides):
    """The shell command of a stage: Hydra overrides shared by every rule, then the rule's own."""
    common = [f"scale={SCALE}", f"results={RESULTS}", f"tracking.uri='{config['tracking_uri']}'",
              f"tracking.enabled={str(flag('tracking')).lower()}"]
    return f"python -m grpo_amp.stages.{module} " + " ".join(common + list(overrides))


def run_args(wildcards):
    return " ".join(f"'{o}'" for o in run_overrides(wildcards.variant))


wildcard_constraints:
    policy="|".join(POLICIES),
    family="tabular|transformer",
    variant=r"[A-Za-z0-9_]+(-(beta|G|M|kl|clip)[A-Za-z0-9.]+)?",


onsuccess:
    if flag("report"):
        # The HTML report needs the finished workflow: run it once everything is done.
        shell(f"mkdir -p {Path(fill(paths.LOG, rule='report', name='html')).parent} && snakemake -s '{workflow.main_snakefile}' --report {fill(paths.REPORT)} --config scale={SCALE} results={RESULTS} "
              f"'tracking_uri={config['tracking_uri']}' > {fill(paths.LOG, rule='report', name='html')} 2>&1 "
              "|| echo 'snakemake --report failed: see the log under logs/report/'")
