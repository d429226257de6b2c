"""Trajectory writers: H5MD (HDF5, readable by OVITO and MDAnalysis) and extxyz (ase.io).

H5MD 1.1 layout written here (de Buyl et al., Comput. Phys. Commun. 185, 1546 (2014)):

    /h5md                      attrs version = [1, 1]; groups author (name), creator (name, version)
    /particles/all/box         attrs dimension = 3, boundary = ["periodic"|"none"] * 3
    /particles/all/box/edges/{step,time,value}     value (T, 3, 3) Angstrom, rows = cell vectors (a along x, b in xy)
    /particles/all/position/{step,time,value}      value (T, N, 3) Angstrom
    /particles/all/velocity/{step,time,value}      value (T, N, 3) Angstrom/fs
    /particles/all/force/{step,time,value}         value (T, N, 3) kJ/(mol Angstrom)  (= eV/Angstrom x 96.485)
    /particles/all/species     (N,) int32 atomic numbers
    /particles/all/{energy,stress,force_deviation}/{step,time,value}   ([output] per_atom only) value (T, N) eV,
                               (T, N, 3, 3) eV Angstrom-3 (ASE's per-atom stress: sums to the stress without its
                               kinetic term), (T, N) eV Angstrom-1 (a committee's per-atom force deviation)
    /observables/{potential_energy,kinetic_energy,temperature}/{step,time,value}

Time is in fs; each time-dependent value has a "unit" attribute, spelt as MDAnalysis's H5MD reader knows them
("Angstrom", "Angstrom fs-1", "kJ mol-1 Angstrom-1": it knows no eV, hence the force unit), and the run file's cell
is turned to a-along-x, b-in-xy before the run (runfile.lammps_orient), so MDAnalysis's box equals ours. The file
ends in .h5md (the suffix MDAnalysis detects). Datasets grow by one frame per write and are flushed, so a crash
loses at most the frame being written; a resumed run first cuts the file back to its restart (outputs.cut_back).
"""

from __future__ import annotations

import errno
import glob
import io
import json
import os
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_masses, atomic_numbers
from ase.io import write
from ase.stress import full_3x3_to_voigt_6_stress
from tea_align.files import AtomicFile, write_text_atomic

from . import __about__
from . import keys as K
from .errors import MDInputError
from .faults import inject

FORCE_UNIT = "kJ mol-1 Angstrom-1"
#: eV/Angstrom -> kJ/(mol Angstrom)
EV_PER_A_TO_FORCE_UNIT = units.mol / units.kJ


#: per-atom outputs: name -> (H5MD element under /particles/all, shape per atom, unit)
PER_ATOM_H5MD = {
    "energy": ("energy", (), "eV"),
    "stress": ("stress", (3, 3), "eV Angstrom-3"),
    "force_deviation": ("force_deviation", (), "eV Angstrom-1"),
}


def per_atom_values(state, name: str) -> np.ndarray:
    """A gathered State's per-atom output ``name`` ([output] per_atom): energies (eV), stresses (eV/A^3, -W_i / V)
    or force deviations (eV/A)."""
    if name == "energy":
        return np.asarray(state.atomic_energies)
    if name == "stress":
        return -np.asarray(state.atomic_virials) / abs(np.linalg.det(state.cell))
    if state.force_deviation is None:  # a step between fdev_every evaluations
        return np.full(len(state.positions), np.nan)
    return np.asarray(state.force_deviation)


class H5MDWriter:
    """Append frames of a fixed set of N atoms to an H5MD file (created or, with ``append``, extended); ``per_atom``:
    names of PER_ATOM_H5MD written with each frame."""

    def __init__(
        self,
        path: str | Path,
        numbers: np.ndarray,
        pbc: np.ndarray,
        append: bool = False,
        per_atom: tuple[str, ...] = (),
    ):
        import h5py  # lazy: HDF5 only for .h5 files

        self.path = Path(path)
        self.n = len(numbers)
        self.per_atom = tuple(per_atom)
        exists = self.path.exists() and append
        self.h5 = h5py.File(self.path, "a" if exists else "w")
        for name in self.per_atom:  # a resumed file may not have them yet
            element, shape, unit = PER_ATOM_H5MD[name]
            if not exists or element not in self.h5[K.H5MD_PARTICLES]:
                if not exists and K.H5MD_PARTICLES not in self.h5:
                    self.h5.create_group(K.H5MD_PARTICLES)
                self._element(self.h5[K.H5MD_PARTICLES], element, (self.n, *shape), unit)
        if exists:
            return
        h = self.h5.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h.create_group("author").attrs["name"] = "allegro-fm-md"
        c = h.create_group("creator")
        c.attrs["name"], c.attrs["version"] = "allegro-fm-md", __about__.__version__
        part = self.h5.require_group(K.H5MD_PARTICLES)
        box = part.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array(["periodic" if p else "none" for p in pbc], dtype="S8")
        part.create_dataset("species", data=np.asarray(numbers, dtype=np.int32))
        for name, shape, unit in (
            ("box/edges", (3, 3), "Angstrom"),
            ("position", (self.n, 3), "Angstrom"),
            ("velocity", (self.n, 3), "Angstrom fs-1"),
            ("force", (self.n, 3), FORCE_UNIT),
        ):
            self._element(part, name, shape, unit)
        obs = self.h5.create_group("observables")
        for name, unit in (
            ("potential_energy", "eV"),
            ("kinetic_energy", "eV"),
            ("temperature", "K"),
        ):
            self._element(obs, name, (), unit)

    @staticmethod
    def _element(group, name, shape, unit):
        g = group.create_group(name)
        # a slot resized but never written (a crash mid-frame) reads as a step after any restart: cut_back drops it
        g.create_dataset(
            "step",
            (0,),
            np.int64,
            maxshape=(None,),
            chunks=(256,),
            fillvalue=np.iinfo(np.int64).max,
        )
        t = g.create_dataset("time", (0,), np.float64, maxshape=(None,), chunks=(256,))
        t.attrs["unit"] = "fs"
        v = g.create_dataset(
            "value",
            (0, *shape),
            np.float64,
            maxshape=(None, *shape),
            chunks=(1, *shape) if shape else (256,),
        )
        v.attrs["unit"] = unit

    def _append(self, group_path: str, step: int, time_fs: float, value) -> None:
        g = self.h5[group_path]
        k = g["step"].shape[0]
        for name, val in (
            ("value", value),
            ("time", time_fs),
            ("step", step),
        ):  # the step last: it marks a complete entry
            g[name].resize(k + 1, axis=0)
            g[name][k] = val

    def write(self, state) -> None:
        """Append the current frame of an ``integrators.State``; OSError(ENOSPC) naming the file, before writing, when the
        frame would not fit on the disk (HDF5 cannot recover from a failed write: the file would be lost)."""
        s = state
        st = os.statvfs(self.path.parent)
        need = 3 * s.positions.nbytes + (
            1 << 20
        )  # positions, velocities, forces (one chunk each per frame) + metadata
        if st.f_bavail * st.f_frsize < need:
            raise OSError(
                errno.ENOSPC,
                f"no space left for frame {s.step} of the trajectory ({need / 1e6:.1f} MB needed, "
                f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free); the frames before it are kept",
                str(self.path),
            )
        vel_fs = s.velocities * units.fs  # ASE time unit -> Angstrom/fs
        for path, val in (
            (K.H5MD_BOX_EDGES, s.cell),
            (K.H5MD_POSITION, s.positions),
            (K.H5MD_VELOCITY, vel_fs),
            (K.H5MD_FORCE, s.forces * EV_PER_A_TO_FORCE_UNIT),
            (K.H5MD_POTENTIAL_ENERGY, s.energy),
            (K.H5MD_KINETIC_ENERGY, s.kinetic_energy()),
            (K.H5MD_TEMPERATURE, s.temperature()),
        ):
            self._append(path, s.step, s.time_fs, val)
        for name in self.per_atom:
            self._append(
                f"{K.H5MD_PARTICLES}/{PER_ATOM_H5MD[name][0]}",
                s.step,
                s.time_fs,
                per_atom_values(s, name),
            )
        self.h5.flush()

    def close(self) -> None:
        self.h5.close()


def read_h5md_positions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, positions (T, N, 3) A, cells (T, 3, 3) A) of an H5MD file written by H5MDWriter."""
    import h5py  # lazy: HDF5 only for .h5 files

    with h5py.File(path, "r") as h5:
        return (
            h5[K.H5MD_POSITION]["step"][()],
            h5[K.H5MD_POSITION]["value"][()],
            h5[K.H5MD_BOX_EDGES]["value"][()],
        )


class ExtXYZWriter:
    """Append frames as extxyz with ase.io: positions A, velocities, forces eV/A, energy eV, stress (periodic cells: eV/A^3,
    ASE sign, kinetic term included), step and time_fs in the comment line. Each frame goes out in one write.
    ``per_atom``: "energy" -> ``energies`` (eV) and "stress" -> ``stresses`` (Voigt, eV/A^3), the columns
    ``Atoms.get_potential_energies()`` / ``get_stresses()`` read back; "force_deviation" -> a ``force_deviation``
    column (eV/A, ``atoms.arrays``)."""

    def __init__(self, path: str | Path, numbers: np.ndarray, per_atom: tuple[str, ...] = ()):
        self.path, self.numbers = Path(path), np.asarray(numbers)
        self.per_atom = tuple(per_atom)

    def write(self, state) -> None:
        a = Atoms(
            numbers=self.numbers,
            positions=state.positions,
            cell=state.cell,
            pbc=state.pbc,
            masses=state.masses,
        )
        a.set_velocities(state.velocities)
        results = {"energy": state.energy, "forces": state.forces}
        if np.asarray(state.pbc).all():
            kin = np.einsum("i,ij,ik->jk", state.masses, state.velocities, state.velocities)
            results["stress"] = full_3x3_to_voigt_6_stress(
                -(np.asarray(state.virial) + kin) / abs(np.linalg.det(state.cell))
            )
        if "energy" in self.per_atom:
            results["energies"] = per_atom_values(state, "energy")
        if "stress" in self.per_atom:
            results["stresses"] = full_3x3_to_voigt_6_stress(per_atom_values(state, "stress"))
        if "force_deviation" in self.per_atom:
            a.arrays["force_deviation"] = per_atom_values(state, "force_deviation")
        a.calc = SinglePointCalculator(a, **results)
        a.info.update(step=state.step, time_fs=state.time_fs)
        buf = io.StringIO()
        write(buf, a, format="extxyz")
        with (
            open(self.path, "a") as fh
        ):  # one write per frame: a crash leaves at most one partial frame (cut_back drops it)
            fh.write(buf.getvalue())

    def close(self) -> None:
        pass


class ShardWriter:
    """One rank's part of a sharded trajectory (``trajectory.shards/rank-RRRRR.h5``): per frame its own atoms (ids,
    atomic numbers, positions A, velocities A/fs, forces eV/A) appended flat, and per frame the step, time (fs), cell
    (A), potential energy (eV, the system's) and the frame's offset into the atom arrays. Rank 0 also writes
    ``index.json`` (shards, pbc). ``merge_shards`` turns the folder into one H5MD, streaming frame by frame."""

    def __init__(
        self,
        folder: str | Path,
        rank: int,
        size: int,
        species: tuple[str, ...],
        pbc,
        append: bool = False,
    ):
        import h5py  # lazy: HDF5 only for trajectories

        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / f"rank-{rank:05d}.h5"
        self.z_of_type = np.array([atomic_numbers[s] for s in species], dtype=np.int32)
        if rank == 0:
            write_text_atomic(
                self.folder / K.INDEX_FILE,
                json.dumps(
                    {
                        K.FORMAT: SHARD_FORMAT,
                        K.SHARDS: size,
                        K.PBC: [bool(p) for p in pbc],
                        K.SPECIES: list(species),
                    }
                ),
            )
        exists = append and self.path.exists()
        self.h5 = h5py.File(self.path, "a" if exists else "w")
        if exists:
            return
        fr, at = self.h5.create_group(K.FRAMES), self.h5.create_group(K.ATOM_ROWS)
        for name, shape, dt in (
            (K.STEP, (), np.int64),
            (K.TIME, (), np.float64),
            (K.CELL, (3, 3), np.float64),
            (K.ENERGY, (), np.float64),
            (K.VIRIAL, (3, 3), np.float64),
            (K.OFFSET, (), np.int64),
        ):
            kw = {"fillvalue": np.iinfo(np.int64).max} if name == K.STEP else {}
            fr.create_dataset(
                name, (0, *shape), dt, maxshape=(None, *shape), chunks=(256, *shape), **kw
            )
        for name, shape, dt in (
            (K.IDS, (), np.int64),
            (K.NUMBERS, (), np.int32),
            (K.POSITIONS, (3,), np.float64),
            (K.VELOCITIES, (3,), np.float64),
            (K.FORCES, (3,), np.float64),
        ):
            at.create_dataset(name, (0, *shape), dt, maxshape=(None, *shape), chunks=(4096, *shape))

    def write(self, state) -> None:
        """Append this rank's atoms of the current frame (no communication)."""
        st = os.statvfs(self.folder)
        need = 8 * state.positions.nbytes + (1 << 20)
        if st.f_bavail * st.f_frsize < need:
            raise OSError(
                errno.ENOSPC,
                f"no space left for frame {state.step} of the trajectory shards",
                str(self.path),
            )
        at, fr = self.h5[K.ATOM_ROWS], self.h5[K.FRAMES]
        n0, n = at[K.IDS].shape[0], len(state.masses)
        types = state.types if state.types is not None else np.zeros(n, np.int64)
        for name, val in (
            (K.IDS, state.ids),
            (K.NUMBERS, self.z_of_type[types]),
            (K.POSITIONS, state.positions),
            (K.VELOCITIES, state.velocities * units.fs),
            (K.FORCES, state.forces),
        ):
            at[name].resize(n0 + n, axis=0)
            at[name][n0:] = val
        k = fr[K.STEP].shape[0]
        for name, val in (
            (K.TIME, state.time_fs),
            (K.CELL, state.cell),
            (K.ENERGY, state.energy),
            (K.VIRIAL, state.virial),
            (K.OFFSET, n0),
            (K.STEP, state.step),
        ):  # the step last: it marks a complete frame
            fr[name].resize(k + 1, axis=0)
            fr[name][k] = val
        self.h5.flush()

    def close(self) -> None:
        self.h5.close()


SHARD_FORMAT = "allegro-fm-md/trajectory-shards"


def shard_parts(folder: str | Path) -> list[Path]:
    """The parts of a sharded trajectory in step order: ``folder`` and the ``FOLDER-from-step-N`` folders that runs
    resumed on another rank count started next to it (each holds that rank count's shards)."""
    folder = Path(folder)
    parts = [folder] if folder.exists() else []
    more = [
        p
        for p in folder.parent.glob(f"{glob.escape(folder.name)}-from-step-*")
        if p.name.rsplit("-", 1)[1].isdigit()
    ]
    return parts + sorted(more, key=lambda p: int(p.name.rsplit("-", 1)[1]))


def _open_shard_set(folder: Path):
    """(index, open h5py files, usable frames) of one part, checked as a set: index.json readable and of this format,
    exactly the shards it lists, each a readable shard with consistent frame offsets. MDInputError naming the first bad
    shard; the files opened so far are closed."""
    import h5py  # lazy: HDF5 only for trajectories

    try:
        index = json.loads((folder / K.INDEX_FILE).read_text())
        n = int(index[K.SHARDS])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MDInputError(f"{folder}: not a sharded trajectory (index.json: {exc})") from exc
    if index.get(K.FORMAT) != SHARD_FORMAT or n < 1:
        raise MDInputError(
            f"{folder}/index.json: not a sharded trajectory index (format {index.get(K.FORMAT)!r}, {n} shards)"
        )
    names = [f"rank-{r:05d}.h5" for r in range(n)]
    extra = sorted(p.name for p in folder.glob("rank-*.h5") if p.name not in names)
    if extra:
        raise MDInputError(
            f"{folder / extra[0]}: a trajectory shard the index does not list (index.json: {n} shards)"
        )
    files = []
    try:
        for name in names:
            path = folder / name
            if not path.exists():
                raise MDInputError(
                    f"{path}: trajectory shard missing (index.json lists {n} shards)"
                )
            try:
                f = h5py.File(path, "r")
            except OSError as exc:
                raise MDInputError(
                    f"{path}: not a readable trajectory shard (truncated or damaged: {exc})"
                ) from exc
            files.append(f)
            try:
                off, n_atoms = f[K.FRAMES][K.OFFSET][()], f[K.ATOM_ROWS][K.IDS].shape[0]
                steps = f[K.FRAMES][K.STEP][()]
            except KeyError as exc:
                raise MDInputError(f"{path}: not a trajectory shard (no {exc})") from exc
            if len(off) != len(steps) or (
                len(off) and (np.any(np.diff(off) < 0) or off[0] != 0 or off[-1] > n_atoms)
            ):
                raise MDInputError(
                    f"{path}: frame offsets do not fit its {n_atoms} atom rows (a damaged shard)"
                )
        steps = [f[K.FRAMES][K.STEP][()] for f in files]
        usable = min(int((s != np.iinfo(np.int64).max).sum()) for s in steps)
        for f, s in zip(files, steps, strict=True):
            if not np.array_equal(s[:usable], steps[0][:usable]):
                raise MDInputError(
                    f"{f.filename}: its frames' steps differ from {files[0].filename}'s: not one trajectory"
                )
        return index, files, usable
    except BaseException:
        for f in files:
            f.close()
        raise


def merge_shards(folder: str | Path, out: str | Path, overwrite: bool = False) -> tuple[int, int]:
    """One H5MD file (or extxyz, by ``out``'s suffix) from a sharded trajectory, atoms ordered by id, frame by frame
    (memory: one frame of the whole system): every part (``shard_parts``: a run resumed on another rank count continues
    in a ``-from-step-N`` folder) joined in step order, frames every shard of a part completed, each step once. Every
    part is checked as a set before use (``_open_shard_set``). ``out`` may not be inside the input folders, nor an
    existing file unless ``overwrite``. Returns (frames, atoms)."""
    folder, out = Path(folder), Path(out)
    inject("merge")
    parts = shard_parts(folder)
    if not parts:
        raise MDInputError(f"{folder}: no such sharded trajectory")
    for p in parts:
        if out.resolve().is_relative_to(p.resolve()):
            raise MDInputError(f"{out}: the output is inside the input {p}; write it elsewhere")
    if out.exists() and not overwrite:
        raise MDInputError(f"{out} exists; use --overwrite to replace it")
    writer, last, n_frames, n_atoms = None, None, 0, 0
    tmp = AtomicFile(out)
    try:
        for part in parts:
            index, files, usable = _open_shard_set(part)
            try:
                for k in range(usable):
                    step = int(files[0][K.FRAMES][K.STEP][k])
                    if last is not None and step <= last:
                        continue  # a resumed part repeats the step it started from
                    frame = _merged_frame(files, k, index)
                    if n_atoms and len(frame.numbers) != n_atoms:
                        raise MDInputError(
                            f"{part}: frame of step {step} has {len(frame.numbers)} atoms, the earlier "
                            f"frames {n_atoms} (duplicated or missing shards)"
                        )
                    n_atoms = len(frame.numbers)
                    if writer is None:
                        writer = (
                            ExtXYZWriter(tmp.tmp, frame.numbers)
                            if out.suffix == ".extxyz"
                            else H5MDWriter(tmp.tmp, frame.numbers, frame.pbc)
                        )
                    writer.write(frame)
                    last, n_frames = step, n_frames + 1
            finally:
                for f in files:
                    f.close()
        if writer is not None:
            writer.close()
        tmp.commit()
    except BaseException:
        tmp.discard()
        raise
    return n_frames, n_atoms


def _merged_frame(files, k: int, index: dict) -> _Frame:
    """Frame ``k`` of a part's shards as one whole-system frame, atoms by id (MDInputError when ids repeat)."""
    parts = []
    for f in files:
        off, rows = f[K.FRAMES][K.OFFSET][()], f[K.ATOM_ROWS]
        a0 = int(off[k])
        a1 = int(off[k + 1]) if k + 1 < len(off) else rows[K.IDS].shape[0]
        parts.append(
            {n: rows[n][a0:a1] for n in (K.IDS, K.NUMBERS, K.POSITIONS, K.VELOCITIES, K.FORCES)}
        )
    cat = {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}
    order = np.argsort(cat[K.IDS])
    ids = cat[K.IDS][order]
    if len(ids) > 1 and (np.diff(ids) == 0).any():
        dup = int(ids[np.flatnonzero(np.diff(ids) == 0)[0]])
        owners = [f.filename for f, p in zip(files, parts, strict=True) if dup in p[K.IDS]]
        raise MDInputError(f"atom id {dup} appears in {', '.join(owners)}: a duplicated shard")
    f0 = files[0][K.FRAMES]
    return _Frame(
        positions=cat[K.POSITIONS][order],
        velocities=cat[K.VELOCITIES][order] / units.fs,
        forces=cat[K.FORCES][order],
        cell=f0[K.CELL][k],
        pbc=np.array(index[K.PBC]),
        step=int(f0[K.STEP][k]),
        time_fs=float(f0[K.TIME][k]),
        energy=float(f0[K.ENERGY][k]),
        numbers=cat[K.NUMBERS][order],
        virial=f0[K.VIRIAL][k],
    )


class _Frame:
    """A whole-system frame for the writers (the State fields they read; masses from the atomic numbers)."""

    def __init__(
        self, *, positions, velocities, forces, cell, pbc, step, time_fs, energy, numbers, virial
    ):
        self.positions, self.velocities, self.forces, self.cell, self.pbc = (
            positions,
            velocities,
            forces,
            cell,
            pbc,
        )
        self.step, self.time_fs, self.energy, self.numbers = step, time_fs, energy, numbers
        self.masses = atomic_masses[numbers]
        self.virial = virial
        self.ids = np.arange(len(numbers))
        self.types = None

    def kinetic_energy(self, comm=None) -> float:
        return float(0.5 * np.sum(self.masses[:, None] * self.velocities**2))

    def temperature(self, comm=None) -> float:
        return 2.0 * self.kinetic_energy() / (max(3 * len(self.masses) - 3, 1) * units.kB)
