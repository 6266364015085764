"""Fixtures shared across test modules."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> Path:
    """results/smoke of one local ``snakemake --cores 2 --config scale=smoke`` run in a tmp dir, made
    once per session (test_pipeline's helper; its marker file lets test_cluster reuse the same run)."""
    import test_pipeline

    return test_pipeline.smoke_study(tmp_path_factory)
