"""Rule ``pos``: PoS of every question (train and held-out) at every iteration of one run.

    python -m grpo_amp.stages.pos policy=tabular_sgd variant=mean_std_ref scale=smoke

Reads pi_ref (iteration 0) and train/{policy}/{run}/iter_NNN; writes pos/{policy}/{run}.csv with
``policy.pos_method`` (exact: summed over the correct answers; mc: Wilson interval).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from grpo_amp import paths
from grpo_amp.config import Config
from grpo_amp.io import InputError, write_csv
from grpo_amp.policies import load_policy, load_task
from grpo_amp.schema import POS_COLUMNS
from grpo_amp.stages.common import device_for, stage_main


def measure_iteration(policy, task, questions, ref_answer_logp, cfg: Config, generator) -> dict:
    from grpo_amp.pos import pos_exact, pos_mc

    pos, kl_c = pos_exact(policy, questions, ref_answer_logp)
    if cfg.policy.pos_method.value == "exact":
        return {"pos": pos, "pos_lo": pos, "pos_hi": pos, "method": "exact", "kl_in_correct": kl_c}
    mc, lo, hi = pos_mc(policy, task, questions, cfg.policy.mc_samples, generator)
    return {"pos": mc, "pos_lo": lo, "pos_hi": hi, "method": "mc", "kl_in_correct": kl_c}


def run(cfg: Config) -> None:
    import torch
    from tqdm.auto import tqdm

    family, device = cfg.policy.family, device_for(cfg)
    ref_dir, train_dir = paths.path(paths.REFERENCE, cfg), paths.path(paths.TRAIN, cfg)
    task = load_task(family, ref_dir)
    questions = torch.arange(len(task.questions), device=device)
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 7919)  # MC draws apart from training's
    ref = load_policy(family, ref_dir, task, device=device)
    ref_answer_logp = ref.answer_log_probs(questions)
    frames = []
    for n in tqdm(range(cfg.grpo.iterations + 1), desc=f"pos {cfg.policy.name.value}/{cfg.run_name}", unit="iter"):
        state = ref_dir if n == 0 else paths.iteration_dir(train_dir, n)
        if n > 0 and not state.is_dir():
            raise InputError(f"missing checkpoint {state} (train with policy.save_checkpoints=true)")
        policy = ref if n == 0 else load_policy(family, state, task, device=device)
        cols = measure_iteration(policy, task, questions, ref_answer_logp, cfg, generator)
        frames.append(pd.DataFrame({"question": task.questions["question"].to_numpy(),
                                    "split": task.questions["split"].to_numpy(), "iteration": n, **cols}))
    table = pd.concat(frames, ignore_index=True)[POS_COLUMNS]
    if not np.isfinite(table["pos"]).all():
        raise InputError(f"non-finite PoS measured from {train_dir}: a corrupt checkpoint?")
    write_csv(table, paths.path(paths.POS, cfg))


if __name__ == "__main__":
    stage_main(run)
