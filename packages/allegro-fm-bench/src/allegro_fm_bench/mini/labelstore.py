"""The published labels of Allegro-FM-mini: every finished labelling stage of a ``make_mini_model.sh`` run, kept in the
repository (``datasets/allegro-fm-mini/``) so that a remake on a new machine resumes where the last one stopped, and so
that anyone can check a remake against them stage by stage.

    allegro-fm-bench labels pack RUN STORE      # copy RUN's finished stages into STORE (xz), never changing a stored one
    allegro-fm-bench labels restore STORE RUN   # put STORE's stages into RUN where RUN lacks them (checksums verified)
    allegro-fm-bench labels check STORE RUN     # which of RUN's stages are byte-identical to the stored ones

A stage file is immutable once written (minidata's ``_stage`` writes it atomically and never again): ``pack`` refuses a
stage whose bytes differ from the stored copy, and ``restore`` never replaces a file RUN already has. Checkpoints that
a stage rewrites as it goes (the reference NEB's band, a training phase's ``last.ckpt``) may be replaced by a newer one.
Written by hand because no library keeps a content-addressed, resumable copy of a labelling run (xz from the standard
library, one JSON manifest).
"""

from __future__ import annotations

import hashlib
import json
import logging
import lzma
from dataclasses import dataclass
from pathlib import Path

from tea_align.files import write_bytes_atomic, write_text_atomic

log = logging.getLogger(__name__)

#: what a run keeps, relative to the run folder: stage files (immutable) and checkpoints (rewritten while running)
STAGES = (
    "data/*/*.extxyz",
    "neb-reference/endpoints.extxyz",
    "neb-reference/saddle.extxyz",
    "neb-reference/images.extxyz",
    "neb-reference/saddle.json",
    "neb-reference/descents-*.extxyz",
)
#: a training phase resumes from last.ckpt, the next phase starts from best.ckpt (copied to its init.ckpt); the NEB from
#: its band and state; its result.json is rewritten by every run of check_neb_reference.py (it holds the run's wall time)
CHECKPOINTS = (
    "neb-reference/band.extxyz",
    "neb-reference/band.json",
    "neb-reference/result.json",
    "*/init.ckpt",
    "*/last.ckpt",
    "*/best.ckpt",
)
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class StoredFile:
    """One file of the store: its path in the run folder, sha256 and size (bytes) of its uncompressed content, and
    whether it is a checkpoint (replaceable) or a finished stage (immutable)."""

    path: str
    sha256: str
    size: int
    checkpoint: bool = False


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _finished(run: Path) -> dict[str, bool]:
    """Run-relative paths of RUN's finished stage files and checkpoints (True: checkpoint); temporaries and locks skipped."""
    found = {}
    for patterns, is_ckpt in ((STAGES, False), (CHECKPOINTS, True)):
        for pattern in patterns:
            for p in sorted(run.glob(pattern)):
                if p.is_file() and not p.name.startswith(".") and ".partial" not in p.name:
                    found[p.relative_to(run).as_posix()] = is_ckpt
    return found


def read_manifest(store: str | Path) -> dict[str, StoredFile]:
    """The store's manifest (empty for a new store); ValueError naming the file when it is unreadable."""
    path = Path(store) / MANIFEST
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text())
        return {k: StoredFile(path=k, **v) for k, v in raw["files"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a label-store manifest ({exc})") from exc


def _write_manifest(store: Path, files: dict[str, StoredFile]) -> None:
    body = {
        "about": "Allegro-FM-mini labels, stage by stage (packages/allegro-fm-bench/scripts/make_mini_model.sh); "
        "sha256 and size of each uncompressed file; PATH.xz holds it",
        "files": {
            k: {"sha256": f.sha256, "size": f.size, "checkpoint": f.checkpoint}
            for k, f in sorted(files.items())
        },
    }
    write_text_atomic(store / MANIFEST, json.dumps(body, indent=1) + "\n")


def _stored_bytes(store: Path, entry: StoredFile) -> bytes:
    path = store / f"{entry.path}.xz"
    try:
        data = lzma.decompress(path.read_bytes())
    except (OSError, lzma.LZMAError) as exc:
        raise ValueError(f"{path}: unreadable ({exc})") from exc
    if _sha256(data) != entry.sha256:
        raise ValueError(
            f"{path}: its content does not match the manifest's sha256 (corrupt store file)"
        )
    return data


def pack(run: str | Path, store: str | Path) -> dict[str, str]:
    """Copy RUN's finished stages and checkpoints into STORE as PATH.xz and record them in STORE/MANIFEST.json.
    Returns {path: "added" | "same" | "updated" (a checkpoint)}; ValueError when a finished stage differs from its
    stored copy (a remake that does not reproduce the published labels: nothing is overwritten)."""
    run, store = Path(run), Path(store)
    if not run.is_dir():
        raise ValueError(f"{run}: no such run folder")
    files = read_manifest(store)
    found = {rel: (is_ckpt, (run / rel).read_bytes()) for rel, is_ckpt in _finished(run).items()}
    sha = {rel: _sha256(data) for rel, (_, data) in found.items()}
    differ = [
        rel
        for rel, (is_ckpt, _) in found.items()
        if rel in files
        and files[rel].sha256 != sha[rel]
        and not (files[rel].checkpoint and is_ckpt)
    ]
    if differ:
        raise ValueError(
            f"{run}: {len(differ)} finished stage(s) differ from the stored ones, nothing packed: "
            + ", ".join(differ[:8])
            + (" ..." if len(differ) > 8 else "")
        )
    status = {}
    for rel, (is_ckpt, data) in found.items():
        old = files.get(rel)
        if old is not None and old.sha256 == sha[rel]:
            status[rel] = "same"
            continue
        write_bytes_atomic(store / f"{rel}.xz", lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))
        files[rel] = StoredFile(rel, sha[rel], len(data), is_ckpt)
        status[rel] = "updated" if old is not None else "added"
        _write_manifest(store, files)  # after each file: a killed pack loses nothing it finished
        log.info("%s: %s (%d bytes)", rel, status[rel], len(data))
    return status


def restore(store: str | Path, run: str | Path) -> dict[str, str]:
    """Write STORE's files into RUN where RUN has no such file (checksums verified). Returns {path: "restored" |
    "same" | "differs" | "kept"}: "differs" is a finished stage RUN made itself with other bytes (kept, reported),
    "kept" a checkpoint RUN already has (RUN's own, possibly newer)."""
    store, run = Path(store), Path(run)
    files = read_manifest(store)
    if not files:
        raise ValueError(f"{store}: no {MANIFEST}: not a label store")
    status = {}
    for rel, entry in sorted(files.items()):
        target = run / rel
        if target.exists():
            same = _sha256(target.read_bytes()) == entry.sha256
            status[rel] = "same" if same else ("kept" if entry.checkpoint else "differs")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(target, _stored_bytes(store, entry))
        status[rel] = "restored"
    return status


def check(store: str | Path, run: str | Path) -> dict[str, str]:
    """Compare RUN's finished stages with STORE's: {path: "same" | "differs" | "not in run" | "not in store"}
    (checkpoints excluded: they are not results)."""
    store, run = Path(store), Path(run)
    files = read_manifest(store)
    found = {k for k, ck in _finished(run).items() if not ck}
    status = {}
    for rel, entry in sorted(files.items()):
        if entry.checkpoint:
            continue
        if rel not in found:
            status[rel] = "not in run"
        else:
            status[rel] = "same" if _sha256((run / rel).read_bytes()) == entry.sha256 else "differs"
    for rel in sorted(found - set(files)):
        status[rel] = "not in store"
    return status
