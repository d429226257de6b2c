"""The keys of the files the engine writes, as typed constants (the pattern of nequip's ``data/_keys.py``): a writer and
its readers name each key once, here, so a renamed key is one edit and a misspelt one an ImportError, not a KeyError
in a resumed run. Units are those of the module that writes them (restart.py, trajectory.py)."""

from __future__ import annotations

from typing import Final

# -- restart: the npz's ``meta`` JSON and a sharded restart's index.json -----------------------------------------------
FORMAT: Final = "format"  #: "allegro-fm-md/restart" (restart) or "allegro-fm-md/trajectory-shards" (trajectory folder)
VERSION: Final = "version"
STEP: Final = "step"
TIME_FS: Final = "time_fs"
MOMENTUM_CONSERVED: Final = "momentum_conserved"
INTEGRATOR: Final = "integrator"  #: the integrator's class name
INTEGRATOR_STATE: Final = "integrator_state"  #: its ``state_dict()`` (JSON) or None
RNG_STATES: Final = "rng_states"  #: per-rank random generator states, or None
META: Final = "meta"  #: the npz member holding the JSON meta
# a sharded restart's index.json only
SHARDS: Final = "shards"  #: number of shard files (the writing rank count)
ATOMS: Final = "atoms"  #: total atoms
SHARD_ATOMS: Final = "shard_atoms"  #: atoms per shard
SHARD_BYTES: Final = "shard_bytes"  #: file size per shard
SHARD_SHA256: Final = "shard_sha256"  #: checksum per shard
SPECIES: Final = "species"  #: element of each type index (trajectory shards)
INDEX_FILE: Final = "index.json"

# -- restart arrays (all atoms, ordered by id; a shard holds its rank's atoms) -----------------------------------------
POSITIONS: Final = "positions"  # A
VELOCITIES: Final = "velocities"  # A / ASE time unit
MASSES: Final = "masses"  # amu
CELL: Final = "cell"  # A, rows
PBC: Final = "pbc"
FORCES: Final = "forces"  # eV/A
VIRIAL: Final = "virial"  # eV
ENERGY: Final = "energy"  # eV
IDS: Final = "ids"
TYPES: Final = "types"
RESTART_ARRAYS: Final = (
    POSITIONS,
    VELOCITIES,
    MASSES,
    CELL,
    PBC,
    FORCES,
    VIRIAL,
    ENERGY,
    IDS,
    TYPES,
)
SHARD_ARRAYS: Final = (POSITIONS, VELOCITIES, MASSES, FORCES, IDS, TYPES)

# -- trajectory shards (one HDF5 per writing rank): groups and datasets -------------------------------------------------
FRAMES: Final = "frames"  #: per-frame group: STEP, TIME, CELL, ENERGY, VIRIAL, OFFSET
ATOM_ROWS: Final = (
    "atoms"  #: per-atom group, frames appended: IDS, NUMBERS, POSITIONS, VELOCITIES, FORCES
)
TIME: Final = "time"  # fs
OFFSET: Final = "offset"  #: first row of the frame in the ATOM_ROWS group
NUMBERS: Final = "numbers"  #: atomic numbers

# -- H5MD (the merged or single-writer trajectory): element paths ------------------------------------------------------
H5MD_PARTICLES: Final = "particles/all"
H5MD_BOX_EDGES: Final = "particles/all/box/edges"
H5MD_POSITION: Final = "particles/all/position"
H5MD_VELOCITY: Final = "particles/all/velocity"
H5MD_FORCE: Final = "particles/all/force"
H5MD_SPECIES: Final = "particles/all/species"
H5MD_POTENTIAL_ENERGY: Final = "observables/potential_energy"
H5MD_KINETIC_ENERGY: Final = "observables/kinetic_energy"
H5MD_TEMPERATURE: Final = "observables/temperature"
