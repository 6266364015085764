"""A reproducible tarball of the published summaries, with their checksums, for an archive with a DOI.

    grpo-amp archive grpo-amp-published.tar.gz                      # results/published/ by default
    grpo-amp archive out.tar.gz --published results/published --prefix grpo-amp-0.1.0-published

Inside: ``<prefix>/SHA256SUMS`` (``sha256sum -c`` format, one line per file, sorted) and every file
under the published directory, at ``<prefix>/<its path>``. The same files give the same bytes:
members sorted by path, mtime fixed (``SOURCE_DATE_EPOCH``, else 0), owner root, modes 0644/0755,
gzip without a name or a time stamp.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

from grpo_amp.io import InputError, atomic_path, sha256

SUMS_FILE = "SHA256SUMS"


def _files(root: Path) -> list[Path]:
    # dot-files are the temporaries of an interrupted write (grpo_amp.io.atomic_path): never archived
    return sorted((p for p in root.rglob("*") if p.is_file() and not any(
        part.startswith(".") for part in p.relative_to(root).parts)), key=lambda p: p.relative_to(root).as_posix())


def checksums(root: str | Path) -> str:
    """``<sha256>  <path>`` for every file under ``root`` (its own SHA256SUMS left out), sorted by path."""
    root = Path(root)
    return "".join(f"{sha256(p)}  {p.relative_to(root).as_posix()}\n" for p in _files(root)
                   if p.relative_to(root).as_posix() != SUMS_FILE)


def _member(name: str, size: int, mtime: int, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = size, mtime, mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_archive(out: str | Path, published: str | Path = "results/published", prefix: str | None = None) -> list[str]:
    """Write the tarball; the member names, in order (directories first, then SHA256SUMS and the files)."""
    from grpo_amp import __version__

    published, out = Path(published), Path(out)
    if not published.is_dir():
        raise InputError(f"missing directory: {published}")
    files = [p for p in _files(published) if p.relative_to(published).as_posix() != SUMS_FILE]
    if not files:
        raise InputError(f"no files under {published}")
    prefix = prefix or f"grpo-amp-{__version__}-published"
    mtime = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    sums = checksums(published).encode()
    names = []
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime) as gz, \
                tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
            dirs = sorted({a.as_posix() for p in files for a in p.relative_to(published).parents} - {"."})
            for d in ["", *dirs]:  # every directory first, so extracting needs no implicit ones
                info = _member(f"{prefix}/{d}".rstrip("/"), 0, mtime, 0o755)
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                names.append(info.name)
            tar.addfile(_member(f"{prefix}/{SUMS_FILE}", len(sums), mtime), io.BytesIO(sums))
            names.append(f"{prefix}/{SUMS_FILE}")
            for p in files:
                name = f"{prefix}/{p.relative_to(published).as_posix()}"
                mode = 0o755 if os.access(p, os.X_OK) else 0o644
                with open(p, "rb") as f:
                    tar.addfile(_member(name, p.stat().st_size, mtime, mode), f)
                names.append(name)
    return names
