"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory):
    """results/smoke of one local `snakemake --cores 2 --config scale=smoke` run, made once per session."""
    import test_pipeline

    return test_pipeline.smoke_study(tmp_path_factory)
