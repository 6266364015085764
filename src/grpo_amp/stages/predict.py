"""Rule ``predict``: C3 (and E1's finite-G C3) from the measured p_ref of one run.

    python -m grpo_amp.stages.predict policy=tabular_sgd variant=mean_std_ref scale=smoke
"""

from __future__ import annotations

from grpo_amp import paths
from grpo_amp.config import Config
from grpo_amp.io import read_csv, write_csv
from grpo_amp.predict import predict_frame
from grpo_amp.schema import POS_COLUMNS
from grpo_amp.stages.common import stage_main


def run(cfg: Config) -> None:
    pos = read_csv(paths.path(paths.POS, cfg), POS_COLUMNS)
    write_csv(predict_frame(pos, cfg.variant, cfg.grpo.group_size), paths.path(paths.PREDICT, cfg))


if __name__ == "__main__":
    stage_main(run)
