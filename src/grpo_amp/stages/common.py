"""The thin entry every stage shares: Hydra composes, a typed Config goes to a plain function.

    # src/grpo_amp/stages/train.py
    def run(cfg: Config) -> None: ...
    if __name__ == "__main__":
        stage_main(run)

Bad input (an unknown variant, beta <= 0, a missing or corrupt file: ``InputError``, its
``ConfigError``, Hydra's and OmegaConf's composition and validation errors) ends as one line on
stderr and exit status 1, never a half-written output. Anything else (a bug, numpy's or pandas'
own ValueError) is not the user's doing: it keeps its full traceback on stderr, the rule's log,
and a non-zero exit status.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from collections.abc import Callable

import hydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from grpo_amp import paths
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


# Only these are the user's doing; a plain ValueError may be an internal bug and keeps its traceback.
USER_ERRORS = (HydraException, OmegaConfBaseException, InputError)


def _is_user_error(exc: BaseException) -> bool:
    # OmegaConf.to_object re-raises a dataclass's __post_init__ error wrapped or as is, depending
    # on the type: look one cause down so a ConfigError inside a Hydra/OmegaConf error still counts.
    return isinstance(exc, USER_ERRORS) or isinstance(exc.__cause__, InputError)


def stage_main(func: Callable[[Config], None]) -> None:
    register_configs()
    failures: list[BaseException] = []

    def _main(dcfg: DictConfig) -> None:
        # Caught here, inside the job: an exception that escapes the job makes Hydra write its own
        # "Error executing job with overrides: ..." line to stderr, a second line beside ours.
        try:
            func(to_config(dcfg))
        except Exception as exc:
            if not _is_user_error(exc):
                raise
            failures.append(exc)

    # Hydra names its job (and so its run dir) after the task function's module: the stage's
    # module (grpo_amp.stages.train -> "train"), not this one, and sys.argv stays as given.
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:
        _main.__module__ = spec.name
    main = hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")(_main)

    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us whole: one line for ours, a full traceback otherwise
    try:
        main()
    except Exception as exc:
        if not _is_user_error(exc):
            raise  # Python prints the whole traceback and exits 1
        failures.append(exc)
    if failures:
        print(f"grpo-amp: error: {one_line(failures[0])}", file=sys.stderr)
        sys.exit(1)


def output_path(cfg: Config, key: str, pattern: str) -> Path:
    """The file the rule named for output ``key`` (``outputs.<key>=...``), else the standard path."""
    named = getattr(cfg.outputs, key)
    return Path(named) if named else paths.path(pattern, cfg)


def named_runs(inputs, names_key: str, *file_keys: str) -> list[tuple[str, str]]:
    """(policy, run) of each "policy/run" in the list ``inputs.<names_key>`` a rule hands over; each list
    ``inputs.<file_key>`` must hold one file per name, in the same order. InputError (one line) otherwise."""
    names = getattr(inputs, names_key)
    for key in file_keys:
        if len(getattr(inputs, key)) != len(names):
            raise InputError(f"inputs.{key}: {len(getattr(inputs, key))} files for {len(names)} inputs.{names_key}")
    out = []
    for name in names:
        policy, sep, run = name.partition("/")
        if not sep or not policy or not run:
            raise InputError(f"inputs.{names_key}: {name!r} is not policy/run")
        out.append((policy, run))
    return out


def input_path(cfg: Config, key: str, pattern: str) -> Path:
    """The file the rule named for input ``key`` (``inputs.<key>=...``), else the standard path."""
    named = getattr(cfg.inputs, key)
    return Path(named) if named else paths.path(pattern, cfg)


def device_for(cfg: Config) -> str:
    return resolve_device(cfg.policy.device)
