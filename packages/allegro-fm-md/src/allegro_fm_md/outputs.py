"""The output folder's discipline (LAMMPS's restart discipline, applied to a folder): one run at a time, and a
resumed run whose files never repeat a step or go back in time.

- ``RunLock``: ``<dir>/.allegro-fm-md.lock`` (pid, host, start time) is created exclusively before anything else is
  written; a second run into the same folder is refused naming the first, also with --overwrite. A lock left by a
  process that is gone (same host, pid not alive), and an empty or unreadable lock older than ``STALE_UNREADABLE_S``
  (a crash between creating and writing it, or a damaged file), are taken over with a warning.
- ``cut_back(dir, step)``: before a run resumes from a restart at ``step``, thermo.log, the H5MD and the extxyz
  trajectories are cut back to the rows and frames with step <= ``step`` (what a killed run wrote after its last
  restart goes), and a partial trailing row or frame (a crash or a full disk during a write) is dropped. Rewritten
  files are replaced atomically.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from tea_align.files import atomic_path

from . import keys as K
from .errors import MDInputError

log = logging.getLogger("allegro_fm_md.outputs")
LOCK_NAME = ".allegro-fm-md.lock"
#: an unreadable lock file younger than this (s) may be one a starting run is still writing: it is respected
STALE_UNREADABLE_S = 10.0
_STEP = re.compile(r"(?:^|\s)step=(-?\d+)(?:\s|$)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class RunLock:
    """Exclusive use of an output folder by one run (created with the folder; ``release`` removes it)."""

    def __init__(self, outdir: str | Path):
        self.outdir = Path(outdir)
        self.path = self.outdir / LOCK_NAME
        self.held = False
        self.created = False

    def describe_holder(self) -> dict | None:
        """The lock file's content (pid, host, started) or None when there is none; ``{"unreadable": True, ...}`` when
        it holds no valid record."""
        try:
            d = json.loads(self.path.read_text())
            if not isinstance(d, dict) or not isinstance(d.get("pid"), int):
                raise ValueError("no pid")
            return d
        except FileNotFoundError:
            return None
        except (OSError, ValueError, UnicodeDecodeError):
            return {"pid": -1, "host": "?", "started": "?", "unreadable": True}

    def acquire(self) -> RunLock:
        """Create the folder and the lock, or raise MDInputError naming the run that holds it."""
        self.created = not self.outdir.exists()
        if self.outdir.exists() and not self.outdir.is_dir():
            raise MDInputError(
                f"{self.outdir}: the output folder is a file; name a folder ([output] dir or run -o)"
            )
        self.outdir.mkdir(parents=True, exist_ok=True)
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
            except FileExistsError:
                other = self.describe_holder() or {}
                pid, host = int(other.get("pid", -1)), other.get("host", "?")
                if host == me["host"] and pid > 0 and not _alive(pid):
                    log.warning(
                        "%s: taking over the lock of run pid %d (no longer running)",
                        self.outdir,
                        pid,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                if other.get("unreadable") and self._age() > STALE_UNREADABLE_S:
                    log.warning(
                        "%s: taking over an unreadable lock file (%.0f s old: no run is writing it)",
                        self.path,
                        self._age(),
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                raise MDInputError(
                    f"{self.outdir} is in use by another run (pid {pid} on {host}, started {other.get('started', '?')}); "
                    f"wait for it, choose another [output] dir, or delete {self.path} if that run is gone"
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return self
        raise MDInputError(
            f"{self.path}: cannot take the lock"
        )  # pragma: no cover - a race lost twice

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def release(self, remove_if_empty: bool = False) -> None:
        """Remove the lock (only the holder does); with ``remove_if_empty`` also the folder, when the lock created it and
        nothing else was written (a run refused before its first step leaves no trace)."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False
            if remove_if_empty and self.created:
                (self.outdir / "run.json").unlink(
                    missing_ok=True
                )  # the refused run's identity: nothing ran
                if not any(self.outdir.iterdir()):
                    self.outdir.rmdir()

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@dataclass(frozen=True)
class CutBack:
    """What ``cut_back`` removed from each file (rows or frames; ``partial``: a truncated trailing row/frame)."""

    thermo_rows: int = 0
    h5md_frames: int = 0
    extxyz_frames: int = 0
    partial: tuple[str, ...] = ()

    def __str__(self) -> str:
        parts = [
            f"{n} {what}"
            for n, what in (
                (self.thermo_rows, "thermo rows"),
                (self.h5md_frames, "H5MD frames"),
                (self.extxyz_frames, "extxyz frames"),
            )
            if n
        ]
        if self.partial:
            parts.append("a partial last entry in " + ", ".join(self.partial))
        return ", ".join(parts) or "nothing"


def _cut_thermo(path: Path, step: int) -> tuple[int, bool]:
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    partial = bool(lines) and not lines[-1].endswith("\n")
    if partial:
        lines = lines[:-1]
    keep, cut = [], 0
    for line in lines:
        fields = line.split()
        if line.startswith("#") or not fields:
            keep.append(line)
            continue
        try:
            s = int(fields[0])
        except ValueError:
            keep.append(line)
            continue
        if s <= step:
            keep.append(line)
        else:
            cut += 1
    if cut or partial:
        with atomic_path(path) as tmp:
            Path(tmp).write_text("".join(keep))
    return cut, partial


def _cut_extxyz(path: Path, step: int) -> tuple[int, bool]:
    """Keep complete frames with step <= ``step`` (streamed: the file is never held in memory)."""
    cut, partial, changed = 0, False, False
    with open(path, "rb") as src, atomic_path(path) as tmp, open(tmp, "wb") as dst:
        while True:
            head = src.readline()
            if not head:
                break
            try:
                n = int(head.strip())
                comment = src.readline()
                body = [src.readline() for _ in range(n)]
            except ValueError:
                partial = changed = True
                break
            if (
                not comment.endswith(b"\n")
                or len(body) < n
                or not all(b.endswith(b"\n") for b in body)
            ):
                partial = changed = True
                break
            m = _STEP.search(comment.decode("utf-8", "replace"))
            if m is not None and int(m.group(1)) > step:
                cut += 1
                changed = True
                continue
            dst.write(head + comment + b"".join(body))
        if not changed:
            dst.close()
            Path(tmp).unlink()
            raise _Unchanged
    return cut, partial


class _Unchanged(Exception):
    """Nothing to cut: the original file stays."""


def _cut_h5md(path: Path, step: int) -> int:
    import h5py  # lazy: HDF5 only for H5MD files

    cut = 0
    with h5py.File(path, "a") as h5:
        groups = []
        h5.visititems(
            lambda name, obj: (
                groups.append(obj)
                if isinstance(obj, h5py.Group) and "step" in obj and "value" in obj
                else None
            )
        )
        for g in groups:
            steps = g["step"][()]
            if steps.ndim == 0:  # a fixed step (time-independent element): nothing to cut
                continue
            k = int((steps <= step).sum())
            if k < len(steps):
                cut = max(cut, len(steps) - k)
                for name in ("step", "time", "value"):
                    if name in g and g[name].ndim and g[name].shape[0] > k:
                        g[name].resize(k, axis=0)
    return cut


def _cut_shard(path: Path, step: int) -> int:
    """One trajectory shard (trajectory.ShardWriter's layout) cut back to its frames with step <= ``step``."""
    import h5py  # lazy: HDF5 only for trajectories

    with h5py.File(path, "a") as h5:
        fr, at = h5[K.FRAMES], h5[K.ATOM_ROWS]
        steps = fr[K.STEP][()]
        k = int((steps <= step).sum())
        if k == len(steps):
            return 0
        n_atoms = int(fr[K.OFFSET][k]) if k < fr[K.OFFSET].shape[0] else at[K.IDS].shape[0]
        for name in fr:
            fr[name].resize(k, axis=0)
        for name in at:
            at[name].resize(min(n_atoms, at[name].shape[0]), axis=0)
        return len(steps) - k


def cut_back(
    outdir: str | Path,
    step: int,
    trajectories: tuple[str, ...] = (
        "trajectory.h5md",
        "trajectory.h5",
        "trajectory.extxyz",
        "uncertain.extxyz",
    ),
) -> CutBack:
    """Cut the folder's thermo log and trajectories back to ``step`` (see the module docstring); returns what went."""
    outdir = Path(outdir)
    rows = frames_h5 = frames_xyz = 0
    partial = []
    thermo = outdir / "thermo.log"
    if thermo.exists():
        rows, p = _cut_thermo(thermo, step)
        if p:
            partial.append(thermo.name)
    for name in trajectories:
        path = outdir / name
        if not path.exists():
            continue
        if path.suffix == ".extxyz":
            try:
                frames_xyz, p = _cut_extxyz(path, step)
            except _Unchanged:
                frames_xyz, p = 0, False
            if p:
                partial.append(name)
        else:
            try:
                frames_h5 = max(frames_h5, _cut_h5md(path, step))
            except OSError as exc:
                raise MDInputError(
                    f"{path}: cannot open the trajectory to resume it ({exc}); move it away to start a new file"
                ) from exc
    for shard in sorted((outdir / "trajectory.shards").glob("rank-*.h5")):
        frames_h5 = max(frames_h5, _cut_shard(shard, step))
    return CutBack(rows, frames_h5, frames_xyz, tuple(partial))
