"""Rule ``pos``: PoS of every question (train and held-out) at every iteration of one run.

    python -m grpo_amp.stages.pos policy=tabular_sgd variant=mean_std_ref scale=smoke

Reads pi_ref (iteration 0) and train/{policy}/{run}/iter_NNN; writes pos/{policy}/{run}.csv with
``policy.pos_method`` (exact: summed over the correct answers; mc: Wilson interval). A run trained
with ``policy.save_checkpoints=false`` measured itself as it went (train/.../pos.csv): that table is
checked and used instead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import paths
from grpo_amp.config import Config
from grpo_amp.io import InputError, read_csv, write_csv
from grpo_amp.policies import load_policy, load_task
from grpo_amp.schema import POS_COLUMNS
from grpo_amp.stages.common import device_for, stage_main


def run(cfg: Config) -> None:
    from tqdm.auto import tqdm

    from grpo_amp.pos import PosMeter

    family, device = cfg.policy.family, device_for(cfg)
    ref_dir, train_dir = paths.path(paths.REFERENCE, cfg), paths.path(paths.TRAIN, cfg)
    in_training = train_dir / paths.POS_MEASURED_IN_TRAINING
    if in_training.is_file():
        table = read_csv(in_training, POS_COLUMNS)
    else:
        task = load_task(family, ref_dir)
        ref = load_policy(family, ref_dir, task, device=device)
        meter = PosMeter(ref, task, cfg.policy.pos_method.value, cfg.policy.mc_samples, cfg.seed)
        frames = []
        # disable=None: a bar on a terminal only, so that a corrupt checkpoint met mid-loop still ends
        # in the one stderr line of stages.common (a bar in a log file is noise anyway)
        for n in tqdm(range(cfg.grpo.iterations + 1), desc=f"pos {cfg.policy.name.value}/{cfg.run_name}", unit="iter",
                      disable=None):
            state = ref_dir if n == 0 else paths.iteration_dir(train_dir, n)
            if n > 0 and not state.is_dir():
                raise InputError(f"missing checkpoint {state} (and no {in_training})")
            policy = ref if n == 0 else load_policy(family, state, task, device=device)
            frames.append(meter(policy, iteration=n))
        table = pd.concat(frames, ignore_index=True)[POS_COLUMNS]
    if not np.isfinite(table["pos"]).all() or set(table["iteration"]) != set(range(cfg.grpo.iterations + 1)):
        raise InputError(f"the PoS of {train_dir} is incomplete or non-finite: a corrupt checkpoint?")
    write_csv(table, paths.path(paths.POS, cfg))


if __name__ == "__main__":
    stage_main(run)
