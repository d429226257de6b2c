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

from . import keys as K
from .comm import agree
from .errors import MDInputError
from .faults import inject

RESTART_FORMAT = "allegro-fm-md/restart"
RESTART_VERSION = 1
ARRAYS = K.RESTART_ARRAYS


@dataclass(frozen=True)
class RestartFile:
    """A restart file's content: ``arrays`` by name (see module docstring) and ``meta``."""

    arrays: dict
    meta: dict

    @property
    def step(self) -> int:
        return int(self.meta[K.STEP])


def write_restart_file(path: str | Path, state, meta: dict) -> Path:
    """Write ``state`` (the gathered system, ordered by id) and ``meta`` (integrator, rng_states, integrator_state) to
    ``path`` atomically; format, version, step, time and momentum flag are added here."""
    meta = {
        K.FORMAT: RESTART_FORMAT,
        K.VERSION: RESTART_VERSION,
        K.STEP: state.step,
        K.TIME_FS: state.time_fs,
        K.MOMENTUM_CONSERVED: state.momentum_conserved,
        **meta,
    }
    buf = io.BytesIO()
    types = state.types if state.types is not None else np.zeros(len(state.masses), np.int64)
    np.savez(
        buf,
        **{
            K.POSITIONS: state.positions,
            K.VELOCITIES: state.velocities,
            K.MASSES: state.masses,
            K.CELL: state.cell,
            K.PBC: state.pbc,
            K.FORCES: state.forces,
            K.VIRIAL: state.virial,
            K.ENERGY: np.array(state.energy),
            K.IDS: state.ids,
            K.TYPES: types,
            K.META: np.array(json.dumps(meta)),
        },
    )
    return write_bytes_atomic(path, buf.getvalue())


def _read_npz(path: Path, names: tuple[str, ...]) -> tuple[dict, dict]:
    """The meta and the arrays ``names`` of an npz restart (npz members load one at a time: meta alone is cheap);
    MDInputError naming the file when it is unreadable or of another format/version."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z[K.META]))
            arrays = {k: z[k] for k in names}
    except Exception as exc:  # zipfile/np.load raise many types for a truncated file
        raise MDInputError(
            f"{path}: not a readable restart file ({type(exc).__name__}: {exc})"
        ) from exc
    if meta.get(K.FORMAT) != RESTART_FORMAT or meta.get(K.VERSION) != RESTART_VERSION:
        raise MDInputError(
            f"{path}: not an allegro-fm-md restart file of version {RESTART_VERSION}"
        )
    return meta, arrays


def read_restart_file(path: str | Path) -> RestartFile:
    """The content of a restart file; MDInputError naming the file if it is unreadable or of another format/version."""
    path = Path(path)
    if path.is_dir():  # a sharded restart: all of its atoms
        return read_restart_shards(path)
    meta, arrays = _read_npz(path, ARRAYS)
    for k in (K.POSITIONS, K.VELOCITIES, K.CELL):
        bad = ~np.isfinite(arrays[k]).reshape(len(arrays[k]), -1).all(axis=1)
        if bad.any():
            where = f"atom ids {arrays[K.IDS][bad][:10].tolist()}" if k != K.CELL else "the cell"
            raise MDInputError(
                f"{path}: {k} not finite ({where}); resume from an earlier restart file"
            )
    return RestartFile(arrays, meta)


def restart_atoms(path: str | Path, template):
    """The state in a restart file as ase.Atoms: a copy of ``template`` (the run's starting structure, same atom order
    by id: its elements) with the file's positions (A), velocities and cell."""
    r = read_restart_file(path)
    order = np.argsort(r.arrays[K.IDS])
    a = template.copy()
    if len(a) != len(order):
        raise MDInputError(f"{path}: {len(order)} atoms, but the template structure has {len(a)}")
    a.positions = r.arrays[K.POSITIONS][order]
    a.set_velocities(r.arrays[K.VELOCITIES][order])
    a.cell = r.arrays[K.CELL]
    return a


SHARD_ARRAYS = K.SHARD_ARRAYS


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
        np.savez(
            buf,
            **{
                K.POSITIONS: state.positions,
                K.VELOCITIES: state.velocities,
                K.MASSES: state.masses,
                K.FORCES: state.forces,
                K.IDS: state.ids,
                K.TYPES: types,
            },
        )
        data = buf.getvalue()
        write_bytes_atomic(tmp / f"rank-{rank:05d}.npz", data)
        return len(state.masses), len(data), hashlib.sha256(data).hexdigest()

    mine = agree(
        comm, write_own
    )  # a rank that cannot write stops every rank (the previous restart stays)
    shards = comm.allgather(mine)
    n = sum(s[0] for s in shards)
    if rank == 0:
        index = {
            K.FORMAT: RESTART_FORMAT,
            K.VERSION: RESTART_VERSION,
            K.STEP: state.step,
            K.TIME_FS: state.time_fs,
            K.MOMENTUM_CONSERVED: state.momentum_conserved,
            K.SHARDS: size,
            K.ATOMS: n,
            K.CELL: np.asarray(state.cell).tolist(),
            K.PBC: np.asarray(state.pbc).tolist(),
            K.ENERGY: float(state.energy),
            K.VIRIAL: np.asarray(state.virial).tolist(),
            K.SHARD_ATOMS: [s[0] for s in shards],
            K.SHARD_BYTES: [s[1] for s in shards],
            K.SHARD_SHA256: [s[2] for s in shards],
            **meta,
        }
        (tmp / K.INDEX_FILE).write_text(json.dumps(index))
        old = path.with_name(path.name + ".old")
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    _comm_barrier(comm)
    return path


def _read_index(path: Path) -> dict:
    try:
        index = json.loads((path / K.INDEX_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise MDInputError(f"{path}: not a readable sharded restart (index.json: {exc})") from exc
    if index.get(K.FORMAT) != RESTART_FORMAT or index.get(K.VERSION) != RESTART_VERSION:
        raise MDInputError(f"{path}: not an allegro-fm-md restart of version {RESTART_VERSION}")
    return index


def check_restart_shards(path: str | Path) -> dict:
    """The index of a sharded restart after checking the set (no shard opened: one stat each): every shard the index
    names exists with its recorded size, no other rank-*.npz is there, the atom counts add up. MDInputError naming the
    first bad shard. Restarts written before the index listed its shards (no "shard_bytes") get the existence checks."""
    path = Path(path)
    index = _read_index(path)
    n = int(index[K.SHARDS])
    names = {f"rank-{r:05d}.npz" for r in range(n)}
    extra = sorted(p.name for p in path.glob("rank-*.npz") if p.name not in names)
    if extra:
        raise MDInputError(
            f"{path / extra[0]}: a restart shard the index does not list (index.json: {n} shards); the set is "
            "not one restart: resume from another"
        )
    sizes, atoms = index.get(K.SHARD_BYTES), index.get(K.SHARD_ATOMS)
    for r in range(n):
        f = path / f"rank-{r:05d}.npz"
        if not f.exists():
            raise MDInputError(f"{f}: restart shard missing (index.json lists {n} shards)")
        if sizes is not None and f.stat().st_size != int(sizes[r]):
            raise MDInputError(
                f"{f}: restart shard of {f.stat().st_size} bytes, the index recorded {sizes[r]} (truncated or replaced)"
            )
    if atoms is not None and (len(atoms) != n or sum(atoms) != int(index[K.ATOMS])):
        raise MDInputError(
            f"{path}/index.json: shard atom counts {atoms} do not add up to {index[K.ATOMS]} atoms"
        )
    return index


def read_restart_shards(path: str | Path, rank: int = 0, size: int = 1) -> RestartFile:
    """The atoms of shards ``rank``, ``rank + size``, ... of a sharded restart (all of them for rank 0 of 1) and the
    index as ``meta``; ``arrays`` also hold cell, pbc, energy and virial. Each shard is checked against the index's
    checksum and atom count where recorded. MDInputError naming the file when one is bad (on this rank: callers make it
    collective with ``comm.agree``)."""
    path = Path(path)
    index = _read_index(path)
    sums, counts = index.get(K.SHARD_SHA256), index.get(K.SHARD_ATOMS)
    parts = []
    for r in range(rank, int(index[K.SHARDS]), size):
        f = path / f"rank-{r:05d}.npz"
        try:
            data = f.read_bytes()
            if sums is not None and hashlib.sha256(data).hexdigest() != sums[r]:
                raise MDInputError(
                    f"{f}: restart shard does not match its checksum in index.json (corrupt, or another "
                    "shard's file)"
                )
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                parts.append({k: z[k] for k in SHARD_ARRAYS})
        except MDInputError:
            raise
        except FileNotFoundError as exc:
            raise MDInputError(
                f"{f}: restart shard missing (index.json lists {index[K.SHARDS]} shards)"
            ) from exc
        except Exception as exc:  # zipfile/np.load raise many types for a truncated file
            raise MDInputError(
                f"{f}: not a readable restart shard ({type(exc).__name__}: {exc})"
            ) from exc
        if counts is not None and len(parts[-1][K.IDS]) != int(counts[r]):
            raise MDInputError(
                f"{f}: {len(parts[-1][K.IDS])} atoms, index.json recorded {counts[r]}"
            )
    empty = {
        K.POSITIONS: np.zeros((0, 3)),
        K.VELOCITIES: np.zeros((0, 3)),
        K.FORCES: np.zeros((0, 3)),
        K.MASSES: np.zeros(0),
        K.IDS: np.zeros(0, np.int64),
        K.TYPES: np.zeros(0, np.int64),
    }  # more ranks than shards: some read none
    arrays = {
        k: (np.concatenate([p[k] for p in parts]) if parts else empty[k]) for k in SHARD_ARRAYS
    }
    for k in (K.POSITIONS, K.VELOCITIES):
        bad = ~np.isfinite(arrays[k]).all(axis=1)
        if bad.any():
            raise MDInputError(
                f"{path}: {k} not finite (atom ids {arrays[K.IDS][bad][:10].tolist()}); resume from an earlier restart"
            )
    arrays.update(
        {
            K.CELL: np.array(index[K.CELL]),
            K.PBC: np.array(index[K.PBC], dtype=bool),
            K.ENERGY: np.array(index[K.ENERGY]),
            K.VIRIAL: np.array(index[K.VIRIAL]),
        }
    )
    return RestartFile(arrays, index)


def restart_meta(path: str | Path) -> dict:
    """The meta (npz) or index (sharded folder) of a restart, without its arrays; MDInputError naming the file when it
    is unreadable or of another format/version."""
    path = Path(path)
    if path.is_dir():
        return _read_index(path)
    return _read_npz(path, ())[0]


def restart_header(path: str | Path) -> tuple[int, int]:
    """(step, atoms) of a restart (npz or sharded folder), reading only its metadata and id count: no rank loads the
    system to learn where a run resumes. MDInputError naming the file when it is unreadable."""
    path = Path(path)
    if path.is_dir():
        index = check_restart_shards(path)
        return int(index[K.STEP]), int(index[K.ATOMS])
    meta = restart_meta(path)
    with np.load(path, allow_pickle=False) as z:
        return int(meta[K.STEP]), int(z[K.IDS].shape[0])
