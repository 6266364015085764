import shlex
import sys
from pathlib import Path

from snakemake.utils import min_version, validate

min_version("9.0")

# Against the Snakefile's directory, not the working directory: `--directory <tmp>` must still find it.
configfile: str(Path(workflow.basedir) / "workflows" / "config" / "config.yaml")


validate(config, "../schemas/config.schema.yaml")

sys.path.insert(0, str(Path(workflow.basedir) / "src"))  # the package, even without pip install -e
from grpo_amp import paths, registry  # noqa: E402
from grpo_amp.study.runs import (draw_of, signed_of, draw_runs_of_study, load_study, lm_overrides, lm_results,  # noqa: E402
                                 override_list, override_value, run_overrides, runs_of_study)
from grpo_amp.audit.plan import audit_plan, audit_results  # noqa: E402
from grpo_amp.io import InputError  # noqa: E402

def flag(name, default=True):
    return str(config.get(name, default)).lower() == "true"


SCALE = config["scale"]
# --config lm="task=file task.path=... policy.checkpoint=..." : Hydra overrides for the LM side of the
# study (the transformer family's reference and train jobs; tabular jobs are unaffected),
# checked here by composing them. A user study is not the default one: its outputs go under
# {results}/lm-<digest of the overrides>/{scale}/, so Snakemake never takes one for the other.
LM = lm_overrides(config.get("lm", ""), SCALE)
RESULTS = lm_results(config["results"], LM.overrides)
# ... and its MLflow runs go to a store of its own where the URI is the results root's SQLite file (the
# experiment is named after the scale: in that store a user study's runs would mix with the default one's)
# "" (the default): the SQLite file at the results root, so that `--config results=/elsewhere` keeps its MLflow
# runs beside its outputs instead of in ./results/mlflow.db
DEFAULT_TRACKING_URI = f"sqlite:///{config['results'].rstrip('/')}/mlflow.db"
TRACKING_URI = config["tracking_uri"] or DEFAULT_TRACKING_URI
if LM.overrides and TRACKING_URI == DEFAULT_TRACKING_URI:
    TRACKING_URI = f"sqlite:///{RESULTS}/mlflow.db"
if LM.overrides:
    print(f"grpo-amp: lm overrides {' '.join(LM.overrides)}: results in {RESULTS}/{SCALE}, MLflow runs in "
          f"{TRACKING_URI}", file=sys.stderr)
# --config audit="base=/models/base checkpoints=/runs/out task=file task.path=... variant.beta=0.04 ...": check a
# finished GRPO run's checkpoints against the theory instead of running the study (workflows/rules/audit.smk).
# Checked here, before any job: the overrides compose, the checkpoints exist, are in step order and are the base's
# architecture and tokenizer with safetensors weights. Outputs under {results}/audit-<digest of the overrides>/.
AUDIT = audit_plan(config.get("audit", ""), SCALE)
if AUDIT.overrides and LM.overrides:
    raise InputError("--config: give lm (a study on your model) or audit (a finished run's checkpoints), not both")
AUDIT_ROOT = audit_results(config["results"], AUDIT.overrides)
AUDIT_TRACKING_URI = config["tracking_uri"] or DEFAULT_TRACKING_URI
if AUDIT_TRACKING_URI == DEFAULT_TRACKING_URI:
    AUDIT_TRACKING_URI = f"sqlite:///{AUDIT_ROOT}/mlflow.db"
if AUDIT.overrides:
    print(f"grpo-amp: audit of {len(AUDIT.points) - 1} checkpoints (steps {', '.join(str(p.step) for p in AUDIT.points[1:])}) "
          f"against the base {AUDIT.points[0].path}: results in {AUDIT_ROOT}, MLflow runs in {AUDIT_TRACKING_URI}",
          file=sys.stderr)
STUDY = load_study(SCALE)  # conf/scale/<scale>.yaml, checked against its schema (StudyConfig)
# --config task_draws=N: the scale's study with N task draws (issue 20; the stages get scale.study.task_draws=N)
TASK_DRAWS = [f"scale.study.task_draws={int(config['task_draws'])}"] if "task_draws" in config else []
if TASK_DRAWS:
    import dataclasses

    STUDY = dataclasses.replace(STUDY, task_draws=int(config["task_draws"]))
# in the scale's own policy order: compare's tables list runs in the order the rule hands them over
RUNS = {policy: runs_of_study(STUDY, policy) for policy in STUDY.policies}
RUNS = {policy: runs for policy, runs in RUNS.items() if runs}
# the draw runs (mean_std_ref-draw1, ...): the base run of each draw policy on task draws 1 .. task_draws - 1, each
# from its own reference/{family}-draw{k}; compare reads them for draws.csv only
DRAW_RUNS = {policy: draw_runs_of_study(STUDY, policy) for policy in registry.POLICY_NAMES}
DRAW_RUNS = {policy: runs for policy, runs in DRAW_RUNS.items() if runs}
# who trains a run: train_<policy>, one job for all runs of a policy of a family in the scale's one_job_per_policy
# (train.smk says why); the train rule, one job per run, for the other policies (a GPU each at full scale)
POLICY_JOBS = {p: RUNS.get(p, []) + DRAW_RUNS.get(p, []) for p in registry.POLICY_NAMES
               if registry.family_of(p) in STUDY.one_job_per_policy and (RUNS.get(p) or DRAW_RUNS.get(p))}
RUN_JOB_POLICIES = [p for p in registry.POLICY_NAMES if registry.family_of(p) not in STUDY.one_job_per_policy]
ENV = "../../environment.yml"


def fill(pattern, **fields):
    return pattern.format(results=RESULTS, scale=SCALE, **fields)


TRACKING_JSON = fill(paths.TRACKING)
CLAIMS_CSV = fill(paths.CLAIMS_CSV)
CLAIMS_MD = fill(paths.CLAIMS_MD)
RUNS_CSV = fill(paths.RUNS)
LADDER_CSV = fill(paths.LADDER)
FACTORIAL_CSV = fill(paths.FACTORIAL)
ATTRIBUTION_CSV = fill(paths.ATTRIBUTION)
ITERATIONS_CSV = fill(paths.ITERATIONS)
FIGURES = [fill(paths.FIGURE, name=name) for name in registry.FIGURE_NAMES]
ALL_RUN_NAMES = [f"{p}/{r}" for p, runs in RUNS.items() for r in runs]  # ALL_PREDICT[i] is run ALL_RUN_NAMES[i]
ALL_PREDICT = [fill(paths.PREDICT, policy=p, run=r) for p, runs in RUNS.items() for r in runs]
ALL_CURVES = [fill(paths.CURVES, policy=p, run=r) for p, runs in RUNS.items() for r in runs]
ALL_TRAIN = [fill(paths.TRAIN, policy=p, run=r) for p, runs in RUNS.items() for r in runs]
ALL_POS = [fill(paths.POS, policy=p, run=r) for p, runs in RUNS.items() for r in runs]
DRAWS_CSV = fill(paths.DRAWS)
STUDY_RUN_JSON = fill(paths.STUDY_RUN)
DRAW_RUN_NAMES = [f"{p}/{r}" for p, runs in DRAW_RUNS.items() for r in runs]  # DRAW_PREDICT[j] is DRAW_RUN_NAMES[j]
DRAW_PREDICT = [fill(paths.PREDICT, policy=p, run=r) for p, runs in DRAW_RUNS.items() for r in runs]


def hydra_list(key, items):
    """One shell-quoted Hydra override setting the list ``key`` to ``items`` (each a quoted string)."""
    return shlex.quote(override_list(key, items))


def hydra_file(key, path):
    return shlex.quote(override_value(key, path))


def figure_files(wildcards, input, output):
    """Every file the figures stage reads and writes, named here: it builds no path itself."""
    return " ".join([hydra_file("inputs.runs", input.runs), hydra_file("inputs.ladder", input.ladder),
                     hydra_file("inputs.attribution", input.attribution), hydra_file("inputs.study_run", input.study_run),
                     hydra_list("inputs.run_names", ALL_RUN_NAMES), hydra_list("inputs.predict_files", input.predict),
                     hydra_list("inputs.curves_files", input.curves), hydra_list("outputs.figures", output)])


def compare_files(wildcards, input, output):
    """Every file the compare stage reads and writes, named here: it rebuilds no run list and no path."""
    outs = ("runs", "ladder", "factorial", "attribution", "iterations", "claims_csv", "claims_md", "draws", "study_run")
    return " ".join([hydra_list("inputs.run_names", ALL_RUN_NAMES), hydra_list("inputs.predict_files", input.predict),
                     hydra_list("inputs.train_dirs", input.train), hydra_list("inputs.pos_files", input.pos),
                     hydra_list("inputs.draw_run_names", DRAW_RUN_NAMES),
                     hydra_list("inputs.draw_predict_files", input.draws),
                     *(hydra_file(f"outputs.{key}", output[key]) for key in outs)])


def log_path(rule, name):
    return fill(paths.LOG, rule=rule, name=name)


def bench_path(rule, name):
    return fill(paths.BENCHMARK, rule=rule, name=name)


def stage(module, *overrides):
    """The shell command of a stage: Hydra overrides shared by every rule, then the rule's own."""
    common = [f"scale={SCALE}", f"results={RESULTS}", f"tracking.uri='{TRACKING_URI}'",
              f"tracking.enabled={str(flag('tracking')).lower()}", *TASK_DRAWS]
    return f"python -m grpo_amp.stages.{module} " + " ".join(common + list(overrides))


def lm_args(family):
    """The lm overrides, quoted, for a job of ``family`` ("" for the tabular family)."""
    return " ".join(shlex.quote(o) for o in LM.overrides) if family == "transformer" else ""


def twin_source(draw, plus_sign):
    """The transformer reference directory a twin reference is read from: the same task draw and task (the stage
    names the same one standalone: stages.reference._twin)."""
    return fill(paths.REFERENCE, family=paths.reference_name("transformer", draw, plus_sign))


def lm_inputs(wildcards):
    """The user's model directory and data file, so that a changed file re-runs the reference rule; the
    twin's: the transformer's reference directory (of the same task draw) it is read from."""
    family, draw, plus_sign = paths.parse_reference_name(wildcards.reference)
    if family == "twin":
        return [twin_source(draw, plus_sign)]
    return LM.inputs if family == "transformer" else []


def reference_args(wildcards):
    """The reference job's own overrides: its family's policy and lm overrides, its task draw (task.draw=k, none
    for draw 0), the signed task (task.plus_sign=true), and for the twin the directory it reads (inputs.reference)."""
    family, draw, plus_sign = paths.parse_reference_name(wildcards.reference)
    out = [f"policy={registry.FAMILIES[family].reference_policy}", lm_args(family)]
    if family == "twin":
        out.append(f"'inputs.reference={twin_source(draw, plus_sign)}'")
    if draw:
        out.append(f"task.draw={draw}")
    if plus_sign:
        out.append("task.plus_sign=true")
    return " ".join(out)


def run_args(wildcards):
    return " ".join(f"'{o}'" for o in run_overrides(wildcards.run))


def reference_of_run(policy, run):
    """A run's pi_ref: its family's, of the task draw its run name is on (draw_of), signed where the run is on the
    signed task (signed_of)."""
    return fill(paths.REFERENCE, family=paths.reference_name(registry.family_of(policy), draw_of(run), signed_of(run)))


def reference_of(wildcards):
    return reference_of_run(wildcards.policy, wildcards.run)


def policy_output_files(wildcards, output):
    """A train_<policy> job: every run's four outputs, as Hydra lists in inputs.run_names' order."""
    return " ".join([hydra_list("outputs.train_dirs", output.train), hydra_list("outputs.pos_files", output.pos),
                     hydra_list("outputs.predict_files", output.predict),
                     hydra_list("outputs.curves_files", output.curves)])


wildcard_constraints:
    policy="|".join(registry.POLICY_NAMES),
    reference="(?:" + "|".join(registry.FAMILIES) + r")(?:-draw[1-9][0-9]*)?(?:-signed)?",  # paths.reference_name
    run=registry.RUN_PATTERN,  # a run name (study.runs): the variant, maybe with one swept knob


# --------------------------------------------------------------------------- the audit (audit.smk)
AUDIT_POINTS = {p.name: p for p in AUDIT.points}
AUDIT_FILES = {key: f"{AUDIT_ROOT}/{name}" for key, name in
               {"pos": "pos.csv", "predict": "predict.csv", "checkpoints": "checkpoints.csv",
                "questions": "audit_questions.csv", "overall": "audit.csv", "md": "audit.md",
                "figure": "figures/audit.png"}.items()}


def audit_stage(module, *extra):
    """A stage of the audit: the user's overrides, then what the workflow sets."""
    common = ["policy=transformer", f"scale={SCALE}", f"results={AUDIT_ROOT}", f"tracking.uri='{AUDIT_TRACKING_URI}'",
              f"tracking.enabled={str(flag('tracking')).lower()}"]
    return (f"python -m grpo_amp.stages.{module} " + " ".join(common) + " "
            + " ".join(shlex.quote(o) for o in AUDIT.overrides) + " " + " ".join(extra))


def audit_point_inputs(wildcards):
    """The checkpoint's weights and config (a changed checkpoint re-runs its job) and the question file."""
    path = AUDIT_POINTS[wildcards.point].path
    return [str(f) for f in sorted(path.glob("*.safetensors"))] + [str(path / "config.json"), *AUDIT.inputs]
