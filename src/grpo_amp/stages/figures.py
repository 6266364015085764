"""Rule ``figures``: every figure of the study, drawn from runs.csv and the predict CSVs.

    python -m grpo_amp.stages.figures scale=smoke
"""

from __future__ import annotations

from grpo_amp import paths, registry
from grpo_amp.config import Config
from grpo_amp.io import read_json
from grpo_amp.stages.common import stage_main
from grpo_amp.tracking import mlflow_store as tracking


def run(cfg: Config) -> None:
    from grpo_amp.analysis.figures import make_figure

    scale_dir = paths.path("{results}/{scale}", cfg)
    written = []
    for name in registry.FIGURE_NAMES:
        out = paths.path(paths.FIGURE, cfg, name=name)
        make_figure(name, scale_dir, out)
        written.append(out)
    if cfg.tracking.enabled:
        info = read_json(paths.path(paths.TRACKING, cfg))
        c = tracking.client(cfg.tracking.uri)
        found = c.search_runs([info["experiment_id"]], filter_string=f"tags.`{tracking.RUN_KIND_TAG}` = 'study'")
        for r in found:
            tracking.log_artifacts(cfg.tracking.uri, r.info.run_id, written, subdir="figures")


if __name__ == "__main__":
    stage_main(run)
