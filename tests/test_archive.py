"""The evaluator's side: ``publish``'s provenance, ``archive``'s reproducible tarball, LICENSE and CITATION.cff.

``publish`` runs on a hand-made run directory (summary files, one figure, benchmark TSVs written
here), so its COMMAND.txt is checked against numbers this test chose; the commit and dirty flag
against ``git`` itself.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from grpo_amp import __version__
from grpo_amp.release.archive import SUMS_FILE, checksums, write_archive
from grpo_amp.cli import main
from grpo_amp.release.publish import ROOT, code_commit, rule_threads

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
JOB_SECONDS = {("reference", "tabular"): 3.5, ("train", "tabular_sgd/a"): 10.25, ("train", "tabular_sgd/b"): 4.75,
               ("compare", "compare"): 2.0}


def fake_run(root: Path) -> Path:
    run = root / "results" / "smoke"
    (run / "figures").mkdir(parents=True)
    (run / "claims.csv").write_text("claim,policy,verdict,metric,value,tolerance,evidence\nC3,tabular_sgd,holds,m,0.1,0.2,e\n")
    (run / "claims.md").write_text("# claims\n")
    (run / "runs.csv").write_text("policy,run\ntabular_sgd,mean_std_ref\n")
    (run / "ladder.csv").write_text("rung,policy,pos_final\nR6,tabular_sgd,0.5\n")
    (run / "factorial.csv").write_text("variant,advantage,optimiser,objective,gap\nmean_std_ref,group,steps,one_group,0.2\n")
    (run / "attribution.csv").write_text("variant,factor,kind,effect\nmean_std_ref,total,total,0.2\n")
    (run / "draws.csv").write_text("policy,run,metric,n_draws,mean\ntabular_sgd,mean_std_ref,gap,1,0.2\n")
    (run / "figures" / "trajectories.png").write_bytes(b"\x89PNG fake")
    for (rule, job), s in JOB_SECONDS.items():
        tsv = run / "benchmarks" / rule / f"{job}.tsv"
        tsv.parent.mkdir(parents=True, exist_ok=True)
        tsv.write_text(BENCH_HEADER + f"{s}\t0:00:{int(s):02d}\t1\t1\t1\t1\t0\t0\t50\t1\n")
    return run


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("publish")
    out = root / "published" / "this-machine" / "smoke"
    assert main(["publish", str(fake_run(root)), str(out), "--command", "snakemake --cores 2 --config scale=smoke"]) == 0
    return out


def _comment(text: str, label: str) -> str:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(f"# {label}")]
    return line.removeprefix(f"# {label}").strip()


def test_command_txt_records_commit_machine_threads_and_wall_time(published):
    text = (published / "COMMAND.txt").read_text()
    assert text.splitlines()[0] == "snakemake --cores 2 --config scale=smoke"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)results"], capture_output=True, text=True).stdout.strip()
    commit = _comment(text, "commit:")
    assert re.fullmatch(r"[0-9a-f]{40} \((clean|dirty: .*)\)", commit), commit
    assert commit.startswith(head) and commit.endswith("(clean)") == (dirty == "")
    assert f"{os.cpu_count()} CPUs" in _comment(text, "machine:")
    # the rules' own thread counts, read from workflows/rules/*.smk
    assert "reference 1" in _comment(text, "threads per rule") and "train 1" in _comment(text, "threads per rule")
    walls = _comment(text, "wall time per rule, s (summed over its jobs in benchmarks.csv):")
    assert walls == "compare 2.0, reference 3.5, train 15.0; total 20.5"  # benchmarks.csv is sorted by path
    assert _comment(text, "pip freeze:") == "pip-freeze.txt"


def test_pip_freeze_lists_this_environment(published):
    frozen = (published / "pip-freeze.txt").read_text().splitlines()
    import mlflow
    import pandas

    assert f"mlflow=={mlflow.__version__}" in frozen and f"pandas=={pandas.__version__}" in frozen


def test_dirty_flag_names_changed_tracked_files_but_not_results():
    head, dirty = code_commit()
    assert head is not None and len(head) == 40
    assert all(not d.startswith("results/") for d in dirty)
    threads = rule_threads()
    assert threads["train"] == 1 and threads["reference"] == 1


def test_archive_is_reproducible_and_its_checksums_verify(published, tmp_path, capsys):
    pub_root = published.parents[1]  # .../published
    a, b = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    assert main(["archive", str(a), "--published", str(pub_root)]) == 0
    os.utime(published / "claims.csv", (1e9, 1e9))  # a touched file: same bytes, same archive
    assert main(["archive", str(b), "--published", str(pub_root)]) == 0
    assert a.read_bytes() == b.read_bytes()

    prefix = f"grpo-amp-{__version__}-published"
    with tarfile.open(a) as tar:
        members = tar.getmembers()
        files = {m.name: tar.extractfile(m).read() for m in members if m.isfile()}
    assert all(m.mtime == 0 and m.uid == 0 and m.uname == "" for m in members)
    names = [m.name for m in members if m.isfile()]
    assert names[0] == f"{prefix}/{SUMS_FILE}" and names[1:] == sorted(names[1:])
    expected = {f"{prefix}/this-machine/smoke/{n}" for n in
                ("claims.csv", "claims.md", "runs.csv", "ladder.csv", "factorial.csv", "attribution.csv", "draws.csv", "benchmarks.csv", "pip-freeze.txt", "COMMAND.txt",
                 "figures/trajectories.png")}
    assert set(names[1:]) == expected
    sums = dict(reversed(ln.split("  ", 1)) for ln in files[f"{prefix}/{SUMS_FILE}"].decode().splitlines())
    assert set(sums) == {n.removeprefix(f"{prefix}/") for n in expected}
    for name, digest in sums.items():
        assert hashlib.sha256(files[f"{prefix}/{name}"]).hexdigest() == digest, name
    assert sums["this-machine/smoke/claims.csv"] == hashlib.sha256((published / "claims.csv").read_bytes()).hexdigest()

    (published / "claims.md").write_text("# changed\n")
    c = tmp_path / "c.tar.gz"
    write_archive(c, pub_root)
    assert c.read_bytes() != a.read_bytes()
    assert checksums(pub_root) != files[f"{prefix}/{SUMS_FILE}"].decode()


def test_archive_of_a_missing_directory_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["archive", str(tmp_path / "x.tar.gz"), "--published", str(tmp_path / "nowhere")])
    assert info.value.code == 1
    assert capsys.readouterr().err.strip() == f"grpo-amp: error: missing directory: {tmp_path / 'nowhere'}"
    assert not (tmp_path / "x.tar.gz").exists()


def test_license_and_citation():
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License") and "grpo-amp authors" in license_text
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and cff["version"] == __version__ and cff["license"] == "MIT"
    paper = cff["preferred-citation"]
    assert paper["authors"][0]["family-names"] == "Mroueh" and paper["year"] == 2025
    assert paper["identifiers"][0]["value"] == "arXiv:2503.06639"
    assert "GRPO's Effective Loss, Dynamics, and Success Amplification" in paper["title"]
