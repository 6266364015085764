"""The thin entry every stage shares: Hydra composes, a typed Config goes to a plain function.

    # src/grpo_amp/stages/train.py
    def run(cfg: Config) -> None: ...
    if __name__ == "__main__":
        stage_main(run)

Bad input of any kind (an unknown variant, beta <= 0, a missing or corrupt file) ends as one line
on stderr and exit status 1: never a traceback, never a half-written output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from grpo_amp.config import CONF_DIR, Config, register_configs, to_config
from grpo_amp.devices import resolve_device
from grpo_amp.io import InputError


def one_line(exc: BaseException) -> str:
    """Hydra's and OmegaConf's messages span lines (options, full_key...): keep the informative ones."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.startswith(("full_key:", "object_type=", "reference_type=", "Set the environment"))]
    if not keep:
        return type(exc).__name__
    if len(keep) > 1 and keep[1].startswith("Available options"):  # an unknown group option: list them
        options = []
        for ln in keep[2:]:
            if ln.startswith("Config search path"):
                break
            if not ln.endswith("_schema"):
                options.append(ln)
        return f"{keep[0]} (choose from: {', '.join(options)})"
    message = "; ".join(keep[:2])
    if exc.__cause__ is not None and len(keep) == 1:  # Hydra wraps the reason: "Error merging override ..."
        message += f": {one_line(exc.__cause__)}"
    return message


def stage_main(func: Callable[[Config], None]) -> None:
    register_configs()

    user_errors = (HydraException, OmegaConfBaseException, InputError, ValueError)
    failures: list[BaseException] = []

    @hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
    def _main(dcfg: DictConfig) -> None:
        # Caught here, inside the job: an exception that escapes the job makes Hydra write its own
        # "Error executing job with overrides: ..." line to stderr, a second line beside ours.
        try:
            func(to_config(dcfg))
        except user_errors as exc:
            failures.append(exc)

    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us whole, so we can print one line
    # every stage enters through this module: name Hydra's job (and its run dir) after the stage
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None and not any(a.startswith("hydra.job.name=") for a in sys.argv):
        sys.argv.append(f"hydra.job.name={spec.name.rsplit('.', 1)[-1]}")
    try:
        _main()
    except user_errors as exc:
        failures.append(exc)
    if failures:
        print(f"grpo-amp: error: {one_line(failures[0])}", file=sys.stderr)
        sys.exit(1)


def device_for(cfg: Config) -> str:
    return resolve_device(cfg.policy.device)
