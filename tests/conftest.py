"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """results/smoke of one local ``snakemake --cores 2 --config scale=smoke`` run in a tmp dir, made
    once per session (tests/helpers/pipeline.py; its marker file lets every module reuse the same run)."""
    from helpers.pipeline import smoke_study

    return smoke_study(tmp_path_factory)
