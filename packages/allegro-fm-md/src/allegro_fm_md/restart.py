"""The restart file: one npz per run (rank 0 writes it from the gathered system, atomically), or with ``shards`` a
folder ``restart.shards/`` of one npz per writing rank plus ``index.json`` (no rank ever holds the whole system); the
format's only reader and writer. ``Simulation.write_restart`` / ``read_restart`` and analysis tools (allegro-fm-bench)
use it. Either form resumes on any number of ranks: a sharded restart is read shard r, r + M, r + 2M, ... by rank r of
M, and the first force call migrates the atoms to their owners.

Arrays (all atoms, ordered by id): positions (A), velocities (A / ASE time), masses (amu), cell (A, rows), pbc,
forces (eV/A), virial (eV), energy (eV), ids, types; ``meta`` (JSON): format, version, step, time_fs,
momentum_conserved, integrator (class name), rng_states (per rank, or None), integrator_state (or None).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tea_align.files import write_bytes_atomic

from .comm import agree
from .errors import MDInputError
from .faults import inject

RESTART_FORMAT = "allegro-fm-md/restart"
RESTART_VERSION = 1
ARRAYS = ("positions", "velocities", "masses", "cell", "pbc", "forces", "virial", "energy", "ids", "types")


@dataclass(frozen=True)
class RestartFile:
    """A restart file's content: ``arrays`` by name (see module docstring) and ``meta``."""

    arrays: dict
    meta: dict

    @property
    def step(self) -> int:
        return int(self.meta["step"])


def write_restart_file(path: str | Path, state, meta: dict) -> Path:
    """Write ``state`` (the gathered system, ordered by id) and ``meta`` (integrator, rng_states, integrator_state) to
    ``path`` atomically; format, version, step, time and momentum flag are added here."""
    meta = {"format": RESTART_FORMAT, "version": RESTART_VERSION, "step": state.step, "time_fs": state.time_fs,
            "momentum_conserved": state.momentum_conserved, **meta}
    buf = io.BytesIO()
    types = state.types if state.types is not None else np.zeros(len(state.masses), np.int64)
    np.savez(buf, positions=state.positions, velocities=state.velocities, masses=state.masses, cell=state.cell, pbc=state.pbc,
             forces=state.forces, virial=state.virial, energy=np.array(state.energy), ids=state.ids, types=types,
             meta=np.array(json.dumps(meta)))
    return write_bytes_atomic(path, buf.getvalue())


def read_restart_file(path: str | Path) -> RestartFile:
    """The content of a restart file; MDInputError naming the file if it is unreadable or of another format/version."""
    path = Path(path)
    if path.is_dir():  # a sharded restart: all of its atoms
        return read_restart_shards(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ARRAYS}
    except Exception as exc:  # zipfile/np.load raise many types for a truncated file
        raise MDInputError(f"{path}: not a readable restart file ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != RESTART_FORMAT or meta.get("version") != RESTART_VERSION:
        raise MDInputError(f"{path}: not an allegro-fm-md restart file of version {RESTART_VERSION}")
    for k in ("positions", "velocities", "cell"):
        bad = ~np.isfinite(arrays[k]).reshape(len(arrays[k]), -1).all(axis=1)
        if bad.any():
            where = f"atom ids {arrays['ids'][bad][:10].tolist()}" if k != "cell" else "the cell"
            raise MDInputError(f"{path}: {k} not finite ({where}); resume from an earlier restart file")
    return RestartFile(arrays, meta)


def restart_atoms(path: str | Path, template):
    """The state in a restart file as ase.Atoms: a copy of ``template`` (the run's starting structure, same atom order
    by id: its elements) with the file's positions (A), velocities and cell."""
    r = read_restart_file(path)
    order = np.argsort(r.arrays["ids"])
    a = template.copy()
    if len(a) != len(order):
        raise MDInputError(f"{path}: {len(order)} atoms, but the template structure has {len(a)}")
    a.positions = r.arrays["positions"][order]
    a.set_velocities(r.arrays["velocities"][order])
    a.cell = r.arrays["cell"]
    return a


SHARD_ARRAYS = ("positions", "velocities", "masses", "forces", "ids", "types")


def _comm_barrier(comm) -> None:
    comm.allgather(None)  # a barrier every Comm has


def write_restart_shards(path: str | Path, state, meta: dict, comm) -> Path:
    """Collective: every rank writes its own atoms as ``path/rank-RRRRR.npz`` and rank 0 ``path/index.json`` (format,
    version, step, time_fs, shards, atoms, cell, pbc, energy, virial and ``meta``). Written into a temporary folder that
    replaces ``path`` only when every shard is on disk: a crash leaves the previous restart."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    rank, size = comm.rank, comm.size
    if rank == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _comm_barrier(comm)
    types = state.types if state.types is not None else np.zeros(len(state.masses), np.int64)

    def write_own() -> tuple[int, int, str]:
        inject("shard-write", rank)
        buf = io.BytesIO()
        np.savez(buf, positions=state.positions, velocities=state.velocities, masses=state.masses, forces=state.forces,
                 ids=state.ids, types=types)
        data = buf.getvalue()
        write_bytes_atomic(tmp / f"rank-{rank:05d}.npz", data)
        return len(state.masses), len(data), hashlib.sha256(data).hexdigest()

    mine = agree(comm, write_own)  # a rank that cannot write stops every rank (the previous restart stays)
    shards = comm.allgather(mine)
    n = sum(s[0] for s in shards)
    if rank == 0:
        index = {"format": RESTART_FORMAT, "version": RESTART_VERSION, "step": state.step, "time_fs": state.time_fs,
                 "momentum_conserved": state.momentum_conserved, "shards": size, "atoms": n, "cell": np.asarray(state.cell).tolist(),
                 "pbc": np.asarray(state.pbc).tolist(), "energy": float(state.energy), "virial": np.asarray(state.virial).tolist(),
                 "shard_atoms": [s[0] for s in shards], "shard_bytes": [s[1] for s in shards],
                 "shard_sha256": [s[2] for s in shards], **meta}
        (tmp / "index.json").write_text(json.dumps(index))
        old = path.with_name(path.name + ".old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    _comm_barrier(comm)
    return path


def _read_index(path: Path) -> dict:
    try:
        index = json.loads((path / "index.json").read_text())
    except (OSError, ValueError) as exc:
        raise MDInputError(f"{path}: not a readable sharded restart (index.json: {exc})") from exc
    if index.get("format") != RESTART_FORMAT or index.get("version") != RESTART_VERSION:
        raise MDInputError(f"{path}: not an allegro-fm-md restart of version {RESTART_VERSION}")
    return index


def check_restart_shards(path: str | Path) -> dict:
    """The index of a sharded restart after checking the set (no shard opened: one stat each): every shard the index
    names exists with its recorded size, no other rank-*.npz is there, the atom counts add up. MDInputError naming the
    first bad shard. Restarts written before the index listed its shards (no "shard_bytes") get the existence checks."""
    path = Path(path)
    index = _read_index(path)
    n = int(index["shards"])
    names = {f"rank-{r:05d}.npz" for r in range(n)}
    extra = sorted(p.name for p in path.glob("rank-*.npz") if p.name not in names)
    if extra:
        raise MDInputError(f"{path / extra[0]}: a restart shard the index does not list (index.json: {n} shards); the set is "
                           "not one restart: resume from another")
    sizes, atoms = index.get("shard_bytes"), index.get("shard_atoms")
    for r in range(n):
        f = path / f"rank-{r:05d}.npz"
        if not f.exists():
            raise MDInputError(f"{f}: restart shard missing (index.json lists {n} shards)")
        if sizes is not None and f.stat().st_size != int(sizes[r]):
            raise MDInputError(f"{f}: restart shard of {f.stat().st_size} bytes, the index recorded {sizes[r]} (truncated or replaced)")
    if atoms is not None and (len(atoms) != n or sum(atoms) != int(index["atoms"])):
        raise MDInputError(f"{path}/index.json: shard atom counts {atoms} do not add up to {index['atoms']} atoms")
    return index


def read_restart_shards(path: str | Path, rank: int = 0, size: int = 1) -> RestartFile:
    """The atoms of shards ``rank``, ``rank + size``, ... of a sharded restart (all of them for rank 0 of 1) and the
    index as ``meta``; ``arrays`` also hold cell, pbc, energy and virial. Each shard is checked against the index's
    checksum and atom count where recorded. MDInputError naming the file when one is bad (on this rank: callers make it
    collective with ``comm.agree``)."""
    path = Path(path)
    index = _read_index(path)
    sums, counts = index.get("shard_sha256"), index.get("shard_atoms")
    parts = []
    for r in range(rank, int(index["shards"]), size):
        f = path / f"rank-{r:05d}.npz"
        try:
            data = f.read_bytes()
            if sums is not None and hashlib.sha256(data).hexdigest() != sums[r]:
                raise MDInputError(f"{f}: restart shard does not match its checksum in index.json (corrupt, or another "
                                   "shard's file)")
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                parts.append({k: z[k] for k in SHARD_ARRAYS})
        except MDInputError:
            raise
        except FileNotFoundError as exc:
            raise MDInputError(f"{f}: restart shard missing (index.json lists {index['shards']} shards)") from exc
        except Exception as exc:  # zipfile/np.load raise many types for a truncated file
            raise MDInputError(f"{f}: not a readable restart shard ({type(exc).__name__}: {exc})") from exc
        if counts is not None and len(parts[-1]["ids"]) != int(counts[r]):
            raise MDInputError(f"{f}: {len(parts[-1]['ids'])} atoms, index.json recorded {counts[r]}")
    empty = {"positions": np.zeros((0, 3)), "velocities": np.zeros((0, 3)), "forces": np.zeros((0, 3)), "masses": np.zeros(0),
             "ids": np.zeros(0, np.int64), "types": np.zeros(0, np.int64)}  # more ranks than shards: some read none
    arrays = {k: (np.concatenate([p[k] for p in parts]) if parts else empty[k]) for k in SHARD_ARRAYS}
    for k in ("positions", "velocities"):
        bad = ~np.isfinite(arrays[k]).all(axis=1)
        if bad.any():
            raise MDInputError(f"{path}: {k} not finite (atom ids {arrays['ids'][bad][:10].tolist()}); resume from an earlier restart")
    arrays.update(cell=np.array(index["cell"]), pbc=np.array(index["pbc"], dtype=bool), energy=np.array(index["energy"]),
                  virial=np.array(index["virial"]))
    return RestartFile(arrays, index)


def restart_meta(path: str | Path) -> dict:
    """The meta (npz) or index (sharded folder) of a restart, without its arrays; MDInputError naming the file when it
    is unreadable or of another format/version."""
    path = Path(path)
    if path.is_dir():
        return _read_index(path)
    try:
        with np.load(path, allow_pickle=False) as z:  # npz members load one at a time
            meta = json.loads(str(z["meta"]))
    except Exception as exc:  # zipfile/np.load raise many types for a truncated file
        raise MDInputError(f"{path}: not a readable restart file ({type(exc).__name__}: {exc})") from exc
    if meta.get("format") != RESTART_FORMAT or meta.get("version") != RESTART_VERSION:
        raise MDInputError(f"{path}: not an allegro-fm-md restart file of version {RESTART_VERSION}")
    return meta


def restart_header(path: str | Path) -> tuple[int, int]:
    """(step, atoms) of a restart (npz or sharded folder), reading only its metadata and id count: no rank loads the
    system to learn where a run resumes. MDInputError naming the file when it is unreadable."""
    path = Path(path)
    if path.is_dir():
        index = check_restart_shards(path)
        return int(index["step"]), int(index["atoms"])
    meta = restart_meta(path)
    with np.load(path, allow_pickle=False) as z:
        return int(meta["step"]), int(z["ids"].shape[0])
