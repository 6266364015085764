"""Rule ``figures``: every figure of the study, drawn from the files the rule names (runs.csv, ladder.csv,
attribution.csv, each run's predict and curves CSV) into the PNGs the rule names. Nothing here builds a path.

    python -m grpo_amp.stages.figures scale=smoke inputs.runs=.../runs.csv inputs.ladder=... \\
        inputs.attribution=... inputs.study_run=... 'inputs.run_names=[tabular_sgd/mean_std_ref, ...]' \\
        'inputs.predict_files=[...]' 'inputs.curves_files=[...]' 'outputs.figures=[.../trajectories.png, ...]'
"""

from __future__ import annotations

from pathlib import Path

from grpo_amp import registry
from grpo_amp.config import Config, RuleFiles
from grpo_amp.io import InputError, read_json
from grpo_amp.parallel import parallel_map
from grpo_amp.stages.common import named_runs, stage_main
from grpo_amp.tracking import mlflow_store as tracking


def sources(inputs: RuleFiles):
    """The figures' ``Sources`` from the rule's inputs; a missing or mismatched list is an InputError."""
    from grpo_amp.analysis.figures import Sources

    if not inputs.runs:
        raise InputError("inputs.runs: the figures stage reads only the files its rule names; give runs.csv")
    keys = named_runs(inputs, "run_names", "predict_files", "curves_files")
    return Sources(runs=Path(inputs.runs), predict=dict(zip(keys, map(Path, inputs.predict_files))),
                   curves=dict(zip(keys, map(Path, inputs.curves_files))),
                   ladder=Path(inputs.ladder) if inputs.ladder else None,
                   attribution=Path(inputs.attribution) if inputs.attribution else None)


def outputs(figures: list[str]) -> dict[str, Path]:
    """Figure name -> the PNG the rule named for it (outputs.figures, one per registry.FIGURE_NAMES, in order)."""
    out = [Path(f) for f in figures]
    if [f.stem for f in out] != list(registry.FIGURE_NAMES):
        raise InputError(f"outputs.figures: want one PNG per figure in the order {', '.join(registry.FIGURE_NAMES)}; "
                         f"got {', '.join(f.name for f in out) or 'none'}")
    return dict(zip(registry.FIGURE_NAMES, out))


def _draw(src, target: tuple) -> None:
    from grpo_amp.analysis.figures import make_figure

    make_figure(target[0], src, target[1])


def run(cfg: Config) -> None:
    src, targets = sources(cfg.inputs), outputs(cfg.outputs.figures)
    # each figure drawn on its own (over cfg.workers processes): the PNGs do not depend on how many
    parallel_map(_draw, list(targets.items()), src, cfg.workers)
    if cfg.tracking.enabled:
        if not cfg.inputs.study_run:
            raise InputError("inputs.study_run: tracking is enabled; give the study_run.json compare wrote")
        run_id = read_json(cfg.inputs.study_run)["run_id"]
        if run_id is None:
            raise InputError(f"inputs.study_run: {cfg.inputs.study_run} has no MLflow run (compare ran without tracking)")
        tracking.log_artifacts(cfg.tracking.uri, run_id, list(targets.values()), subdir="figures")

if __name__ == "__main__":
    stage_main(run)
