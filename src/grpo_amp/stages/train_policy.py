"""Rule ``train_<policy>``: every run of one policy in one process (``scale.study.one_job_per_policy`` names the
families that train so; the others get rule ``train``, a job per run).

    python -m grpo_amp.stages.train_policy scale=smoke policy=tabular_sgd \
        'inputs.run_names=[tabular_sgd/mean_std_ref,tabular_sgd/mean_std_ref-beta0.5]' \
        'inputs.references=[results/smoke/reference/tabular,results/smoke/reference/tabular]' \
        'outputs.train_dirs=[...]' 'outputs.pos_files=[...]' 'outputs.predict_files=[...]' 'outputs.curves_files=[...]'

Run i is ``inputs.run_names[i]`` ("policy/run") from pi_ref ``inputs.references[i]``; it writes the files a job of
its own (grpo_amp.stages.train) writes, at ``outputs.train_dirs[i]``, ``outputs.pos_files[i]``,
``outputs.predict_files[i]`` and ``outputs.curves_files[i]``. Each run's config is composed from this job's own
overrides plus the run's (``study.runs.run_overrides``), as its own job would compose it: the same bytes
(tests/test_stages.py). ``policy=`` at the job level lets the job's own config compose (a lm override such as
``task=file`` refuses the default policy's task); each run sets its own. Why one process: a table run's
arithmetic takes about half a second and a CPU transformer run's about 12 s, while starting a process with torch,
Hydra and the model's classes takes 3-5 s (docs/pipeline.md).
"""

from __future__ import annotations

import logging
import sys

from hydra import compose
from hydra.core.hydra_config import HydraConfig
from tqdm import tqdm

from grpo_amp import registry
from grpo_amp.config import Config, to_config
from grpo_amp.io import InputError
from grpo_amp.policies import require_reference
from grpo_amp.stages import train
from grpo_amp.stages.common import named_runs, stage_main
from grpo_amp.study.runs import override_value, run_overrides

log = logging.getLogger(__name__)

OUTPUT_LISTS = {"train_dirs": "train", "pos_files": "pos", "predict_files": "predict", "curves_files": "curves"}
# overrides of this job that name one run or one run's files: each run sets its own
RUN_KEYS = ("inputs.", "outputs.", "policy=", "variant=", "run_name=")


def run_configs(cfg: Config, job_overrides: list[str]) -> list[Config]:
    """Each run's typed config: this job's overrides (scale, results, tracking, lm, ...), then the run's own."""
    runs = named_runs(cfg.inputs, "run_names", "references")
    for key in OUTPUT_LISTS:
        if len(getattr(cfg.outputs, key)) != len(runs):
            raise InputError(f"outputs.{key}: {len(getattr(cfg.outputs, key))} files for {len(runs)} inputs.run_names")
    shared = [o for o in job_overrides if not o.lstrip("+~").startswith(RUN_KEYS)]
    configs = []
    for i, (policy, run_name) in enumerate(runs):
        if policy not in registry.POLICY_NAMES:
            raise InputError(f"inputs.run_names: unknown policy {policy!r} (choose from: {', '.join(registry.POLICY_NAMES)})")
        files = [override_value("inputs.reference", cfg.inputs.references[i]),
                 *(override_value(f"outputs.{one}", getattr(cfg.outputs, key)[i]) for key, one in OUTPUT_LISTS.items())]
        configs.append(to_config(compose("config", overrides=[*shared, f"policy={policy}", *run_overrides(run_name),
                                                              *files])))
    return configs


def run(cfg: Config) -> None:
    configs = run_configs(cfg, list(HydraConfig.get().overrides.task))
    # every run's input before the first run: a missing pi_ref fails the job before it writes anything
    for reference in dict.fromkeys(cfg.inputs.references):
        require_reference(reference)
    # the bar on stdout (the rule's log): stderr keeps bad input to its one line
    for run_cfg in tqdm(configs, desc="runs", unit="run", file=sys.stdout, mininterval=5):
        train.run(run_cfg)
    log.info("trained %d runs in one process", len(configs))


if __name__ == "__main__":
    stage_main(run)
