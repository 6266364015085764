"""The theory lives in the repository: docs/theory.md, cited by everything, with a heading per claim id.

A user's clone has no sibling folder of the authors' notes, so no tracked file may point outside the
repository for the theory, and every claim id the code reports must be explained in docs/theory.md.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
THEORY = ROOT / "docs" / "theory.md"
# Spelled in pieces so that this file does not match its own check.
FORBIDDEN = ("../" + "shared", "THEORY" + ".md")
CLAIM_IDS = tuple(f"C{i}" for i in range(1, 8)) + tuple(f"E{i}" for i in range(1, 7))
CLAIM_ID = re.compile(r"\b([CE][1-9])\b")  # one digit: E402, E731 (noqa codes) are not claim ids


def _repository_files() -> list[str]:
    """Tracked files and new files git does not ignore (so a file is checked before its first commit)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the file list comes from git ls-files")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         check=True, capture_output=True).stdout
    return sorted({name for name in out.decode().split("\0") if name and (ROOT / name).is_file()})


def _headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if re.match(r"#{1,6} ", line)]


def _github_anchor(heading: str) -> str:
    """The id GitHub gives a markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_nothing_points_outside_the_repository_for_the_theory():
    """No file outside results/ (published summaries are history) names the authors' notes folder or
    their theory file; cite docs/theory.md instead."""
    hits = []
    for name in _repository_files():
        if name.startswith("results/"):
            continue
        data = (ROOT / name).read_bytes()
        if not any(f.encode() in data for f in FORBIDDEN):
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), start=1):
            if any(f in line for f in FORBIDDEN):
                hits.append(f"{name}:{number}: {line.strip()[:100]}")
    readme = [h for h in hits if h.startswith("README.md:")]
    note = (" README.md's lines are the lead's to change when merging issue 17 (cite docs/theory.md)."
            if readme else "")
    assert not hits, f"{len(hits)} lines cite the theory outside the repository; cite docs/theory.md.{note}\n" \
        + "\n".join(hits)


def test_every_claim_id_has_a_heading_in_docs_theory():
    """Each id C1..C7, E1..E6 has its own section, and every id the package, the configs or the report
    captions use (the registry, the claims code, ...) is one of them."""
    headings = _headings(THEORY.read_text(encoding="utf-8"))
    with_id = {m for h in headings for m in CLAIM_ID.findall(h.split(":")[0])}
    missing = [c for c in CLAIM_IDS if c not in with_id]
    assert not missing, f"docs/theory.md has no heading for {', '.join(missing)}"

    used: dict[str, str] = {}
    sources = [*(ROOT / "src" / "grpo_amp").rglob("*.py"), *(ROOT / "conf").rglob("*.yaml"),
               *(ROOT / "workflows").rglob("*.rst")]
    assert any(p.name == "registry.py" for p in sources) and any("claims" in str(p) for p in sources)
    for path in sources:
        for cid in CLAIM_ID.findall(path.read_text(encoding="utf-8")):
            used.setdefault(cid, str(path.relative_to(ROOT)))
    unknown = {cid: where for cid, where in used.items() if cid not in with_id}
    assert not unknown, f"claim ids used without a section in docs/theory.md: {unknown}"
    assert {"C1", "C3", "E5"} <= set(used), "the scan found none of the ids the claims code reports"


def test_docs_theory_links_resolve():
    """The contents line's #anchors name real headings (GitHub's slugs), so the document navigates."""
    text = THEORY.read_text(encoding="utf-8")
    anchors = {_github_anchor(h) for h in _headings(text)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links, "docs/theory.md has no contents links"
    broken = [a for a in links if a not in anchors]
    assert not broken, f"docs/theory.md links to missing headings: {broken}"


def test_report_captions_are_valid_restructuredtext():
    """Snakemake renders workflows/report/*.rst as reStructuredText: a stray |x| (a substitution) or a
    broken list shows as an error box in the report instead of the caption."""
    import io

    core = pytest.importorskip("docutils.core")
    captions = sorted((ROOT / "workflows" / "report").glob("*.rst"))
    assert captions
    problems = {}
    for path in captions:
        stream = io.StringIO()
        core.publish_doctree(path.read_text(encoding="utf-8"),
                             settings_overrides={"report_level": 2, "halt_level": 5, "warning_stream": stream})
        if stream.getvalue():
            problems[path.name] = stream.getvalue().strip()
    assert not problems, problems
