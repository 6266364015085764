"""``grpo-amp ui-url``: the MLflow UI's runs view of a scale, in "Model training" mode."""

from __future__ import annotations

from pathlib import Path

import pytest

from grpo_amp.tracking import mlflow_store as tracking
from grpo_amp.cli import main


def test_ui_url_names_the_scales_experiment(tmp_path, capsys):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking.init_tracking(uri, "default", artifact_root=str(tmp_path / "a"))
    exp_id = tracking.init_tracking(uri, "smoke", artifact_root=str(tmp_path / "a"))
    assert main(["ui-url", "--uri", uri, "--scale", "smoke", "--port", "5001"]) == 0
    assert capsys.readouterr().out.strip() == (
        f"http://127.0.0.1:5001/#/experiments/{exp_id}/runs?workflowType=machine_learning")
    assert exp_id != tracking.find_experiment_id(uri, "default")


@pytest.mark.parametrize("store, scale, words", [(False, "smoke", "no MLflow store"),
                                                 (True, "nope", "no MLflow experiment 'grpo-amp/nope'")])
def test_ui_url_without_store_or_experiment_is_one_line(tmp_path, capsys, store, scale, words):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    if store:
        tracking.init_tracking(uri, "smoke", artifact_root=str(tmp_path / "a"))
    with pytest.raises(SystemExit) as info:
        main(["ui-url", "--uri", uri, "--scale", scale])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("grpo-amp: error: ") and words in err[0]


def test_the_installed_ui_reads_the_workflow_type_from_the_url():
    """The MLflow UI bundle this project pins still takes ``?workflowType=machine_learning`` (what
    runs_view_url relies on); an MLflow upgrade that renames it fails here, not in a reader's browser."""
    import mlflow

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    main_js = next(bundle.glob("main.*.js")).read_text(errors="replace")
    assert 'e.get("workflowType")' in main_js
    assert 'MACHINE_LEARNING="machine_learning"' in main_js
