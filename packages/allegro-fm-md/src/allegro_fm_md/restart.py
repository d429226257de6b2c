"""The restart file: one npz per run (rank 0 writes it from the gathered system, atomically), the format's only
reader and writer. ``Simulation.write_restart`` / ``read_restart`` and analysis tools (allegro-fm-bench) use it.

Arrays (all atoms, ordered by id): positions (A), velocities (A / ASE time), masses (amu), cell (A, rows), pbc,
forces (eV/A), virial (eV), energy (eV), ids, types; ``meta`` (JSON): format, version, step, time_fs,
momentum_conserved, integrator (class name), rng_states (per rank, or None), integrator_state (or None).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tea_align.files import write_bytes_atomic

from .errors import MDInputError

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
