"""Rule ``tracking``: create the MLflow store and the scale's experiment once, before parallel jobs.

    python -m grpo_amp.stages.tracking scale=smoke tracking.uri=sqlite:///results/mlflow.db
"""

from __future__ import annotations

from grpo_amp import paths
from grpo_amp.config import Config
from grpo_amp.io import write_json
from grpo_amp.stages.common import output_path, stage_main
from grpo_amp.tracking import mlflow_store as tracking


def run(cfg: Config) -> None:
    experiment_id = None
    if cfg.tracking.enabled:
        artifacts = paths.path("{results}/mlartifacts", results=cfg.results)
        experiment_id = tracking.init_tracking(cfg.tracking.uri, cfg.scale.name, artifact_root=str(artifacts))
    write_json({"uri": cfg.tracking.uri, "enabled": cfg.tracking.enabled, "experiment_id": experiment_id,
                "experiment": tracking.experiment_name(cfg.scale.name)},
               output_path(cfg, "tracking", paths.TRACKING))


if __name__ == "__main__":
    stage_main(run)
