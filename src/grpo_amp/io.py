"""Files between rules: atomic writes (temporary name, then rename) and schema-checked reads.

A rule that dies half-way leaves only ``.tmp-*`` names behind, never a file Snakemake would take
for a finished output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd


class InputError(ValueError):
    """Bad input from the user or a file: the CLI prints its message as one line and exits 1."""


@contextlib.contextmanager
def atomic_path(path: str | Path, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if directory and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def write_json(obj, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=float) + "\n")


def write_text(text: str, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_csv(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    """Read a CSV that an earlier rule wrote; a missing file or column raises InputError naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing input file: {path}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"corrupt CSV file {path}: {str(exc).splitlines()[0]}") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise InputError(f"corrupt CSV file {path}: missing column(s) {', '.join(missing)}")
    return df


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"missing input file: {path}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"corrupt JSON file {path}: {exc}") from None


def one_line(exc: BaseException, limit: int | None = 200) -> str:
    """An exception's message on one line, at most ``limit`` characters: the tail of an InputError."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if limit is None else text[:limit]


def sha256(path: str | Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (weights can be GBs)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def exit_on_user_error(func):
    """Run ``func``; turn InputError/ValueError into one line on stderr and exit status 1."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (InputError, ValueError) as exc:
            message = " ".join(str(exc).split())
            print(f"grpo-amp: error: {message}", file=sys.stderr)
            raise SystemExit(1) from None

    return wrapper
