"""C3 (and E1's finite-G C3) from the measured p_ref of one run, per seed.

    python -m grpo_amp.stages.predict policy=tabular_sgd variant=mean_std_ref scale=smoke

Reads ``inputs.pos`` (pos/{policy}/{run}.csv), writes ``outputs.predict`` (predict/{policy}/{run}.csv)
and ``outputs.curves`` (curves/{policy}/{run}.csv: C3's step and limit on a grid of p, for the figures).
In the workflow the ``train`` rule writes both files in its own process (``write_predictions``, right
after the run's pos file): a process of its own cost about 1.4 s of start-up per run for about 0.1 s
of arithmetic (136 runs at default: 194 of 1675 job-seconds, published benchmarks.csv). This entry
predicts again from any pos file, e.g. after a change to the theory, without retraining.
"""

from __future__ import annotations

import logging

from grpo_amp import paths
from grpo_amp.config import Config
from grpo_amp.io import read_csv, write_csv
from grpo_amp.analysis.predict import curves_frame, finite_group_advantage, predict_frame
from grpo_amp.schema import POS_COLUMNS
from grpo_amp.stages.common import input_path, output_path, stage_main

log = logging.getLogger(__name__)


def run(cfg: Config) -> None:
    pos = read_csv(input_path(cfg, "pos", paths.POS), POS_COLUMNS)
    write_predictions(cfg, pos, output_path(cfg, "predict", paths.PREDICT), output_path(cfg, "curves", paths.CURVES))


def write_predictions(cfg: Config, pos, predict_out, curves_out) -> None:
    """The run's prediction from its measured PoS frame ``pos`` (POS_COLUMNS) and C3's curves, to the two paths."""
    finite_group = finite_group_advantage(cfg)
    if finite_group:
        log.info("finite-G prediction with the loop's own advantage: %s", finite_group)
    # the advantage the trainer computed (grpo_amp.estimators: the same row as grpo.loss.group_advantages)
    est = cfg.advantage
    write_csv(predict_frame(pos, cfg.variant, cfg.grpo.group_size, finite_group, estimator=est), predict_out)
    write_csv(curves_frame(cfg.variant, cfg.grpo.group_size, finite_group, estimator=est), curves_out)


if __name__ == "__main__":
    stage_main(run)
