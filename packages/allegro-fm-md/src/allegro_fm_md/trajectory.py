"""Trajectory writers: H5MD (HDF5, readable by OVITO and MDAnalysis) and extxyz (ase.io).

H5MD 1.1 layout written here (de Buyl et al., Comput. Phys. Commun. 185, 1546 (2014)):

    /h5md                      attrs version = [1, 1]; groups author (name), creator (name, version)
    /particles/all/box         attrs dimension = 3, boundary = ["periodic"|"none"] * 3
    /particles/all/box/edges/{step,time,value}     value (T, 3, 3) Angstrom, rows = cell vectors (a along x, b in xy)
    /particles/all/position/{step,time,value}      value (T, N, 3) Angstrom
    /particles/all/velocity/{step,time,value}      value (T, N, 3) Angstrom/fs
    /particles/all/force/{step,time,value}         value (T, N, 3) kJ/(mol Angstrom)  (= eV/Angstrom x 96.485)
    /particles/all/species     (N,) int32 atomic numbers
    /observables/{potential_energy,kinetic_energy,temperature}/{step,time,value}

Time is in fs; each time-dependent value has a "unit" attribute, spelt as MDAnalysis's H5MD reader knows them
("Angstrom", "Angstrom fs-1", "kJ mol-1 Angstrom-1": it knows no eV, hence the force unit), and the run file's cell
is turned to a-along-x, b-in-xy before the run (runfile.lammps_orient), so MDAnalysis's box equals ours. The file
ends in .h5md (the suffix MDAnalysis detects). Datasets grow by one frame per write and are flushed, so a crash
loses at most the frame being written; a resumed run first cuts the file back to its restart (outputs.cut_back).
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write
from ase.stress import full_3x3_to_voigt_6_stress

from . import __about__

FORCE_UNIT = "kJ mol-1 Angstrom-1"
#: eV/Angstrom -> kJ/(mol Angstrom)
EV_PER_A_TO_FORCE_UNIT = units.mol / units.kJ


class H5MDWriter:
    """Append frames of a fixed set of N atoms to an H5MD file (created or, with ``append``, extended)."""

    def __init__(self, path: str | Path, numbers: np.ndarray, pbc: np.ndarray, append: bool = False):
        import h5py  # lazy: HDF5 only for .h5 files

        self.path = Path(path)
        self.n = len(numbers)
        exists = self.path.exists() and append
        self.h5 = h5py.File(self.path, "a" if exists else "w")
        if exists:
            return
        h = self.h5.create_group("h5md")
        h.attrs["version"] = np.array([1, 1], dtype=np.int32)
        h.create_group("author").attrs["name"] = "allegro-fm-md"
        c = h.create_group("creator")
        c.attrs["name"], c.attrs["version"] = "allegro-fm-md", __about__.__version__
        part = self.h5.create_group("particles/all")
        box = part.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = np.array(["periodic" if p else "none" for p in pbc], dtype="S8")
        part.create_dataset("species", data=np.asarray(numbers, dtype=np.int32))
        for name, shape, unit in (("box/edges", (3, 3), "Angstrom"), ("position", (self.n, 3), "Angstrom"),
                                  ("velocity", (self.n, 3), "Angstrom fs-1"), ("force", (self.n, 3), FORCE_UNIT)):
            self._element(part, name, shape, unit)
        obs = self.h5.create_group("observables")
        for name, unit in (("potential_energy", "eV"), ("kinetic_energy", "eV"), ("temperature", "K")):
            self._element(obs, name, (), unit)

    @staticmethod
    def _element(group, name, shape, unit):
        g = group.create_group(name)
        # a slot resized but never written (a crash mid-frame) reads as a step after any restart: cut_back drops it
        g.create_dataset("step", (0,), np.int64, maxshape=(None,), chunks=(256,), fillvalue=np.iinfo(np.int64).max)
        t = g.create_dataset("time", (0,), np.float64, maxshape=(None,), chunks=(256,))
        t.attrs["unit"] = "fs"
        v = g.create_dataset("value", (0, *shape), np.float64, maxshape=(None, *shape), chunks=(1, *shape) if shape else (256,))
        v.attrs["unit"] = unit

    def _append(self, group_path: str, step: int, time_fs: float, value) -> None:
        g = self.h5[group_path]
        k = g["step"].shape[0]
        for name, val in (("value", value), ("time", time_fs), ("step", step)):  # the step last: it marks a complete entry
            g[name].resize(k + 1, axis=0)
            g[name][k] = val

    def write(self, state) -> None:
        """Append the current frame of an ``integrators.State``; OSError(ENOSPC) naming the file, before writing, when the
        frame would not fit on the disk (HDF5 cannot recover from a failed write: the file would be lost)."""
        s = state
        st = os.statvfs(self.path.parent)
        need = 3 * s.positions.nbytes + (1 << 20)  # positions, velocities, forces (one chunk each per frame) + metadata
        if st.f_bavail * st.f_frsize < need:
            raise OSError(errno.ENOSPC, f"no space left for frame {s.step} of the trajectory ({need / 1e6:.1f} MB needed, "
                                        f"{st.f_bavail * st.f_frsize / 1e6:.1f} MB free); the frames before it are kept", str(self.path))
        vel_fs = s.velocities * units.fs  # ASE time unit -> Angstrom/fs
        for path, val in (("particles/all/box/edges", s.cell), ("particles/all/position", s.positions),
                          ("particles/all/velocity", vel_fs), ("particles/all/force", s.forces * EV_PER_A_TO_FORCE_UNIT),
                          ("observables/potential_energy", s.energy), ("observables/kinetic_energy", s.kinetic_energy()),
                          ("observables/temperature", s.temperature())):
            self._append(path, s.step, s.time_fs, val)
        self.h5.flush()

    def close(self) -> None:
        self.h5.close()


def read_h5md_positions(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(steps, positions (T, N, 3) A, cells (T, 3, 3) A) of an H5MD file written by H5MDWriter."""
    import h5py  # lazy: HDF5 only for .h5 files

    with h5py.File(path, "r") as h5:
        p = h5["particles/all"]
        return p["position/step"][()], p["position/value"][()], p["box/edges/value"][()]


class ExtXYZWriter:
    """Append frames as extxyz with ase.io: positions A, velocities, forces eV/A, energy eV, stress (periodic cells: eV/A^3,
    ASE sign, kinetic term included), step and time_fs in the comment line. Each frame goes out in one write."""

    def __init__(self, path: str | Path, numbers: np.ndarray):
        self.path, self.numbers = Path(path), np.asarray(numbers)

    def write(self, state) -> None:
        a = Atoms(numbers=self.numbers, positions=state.positions, cell=state.cell, pbc=state.pbc, masses=state.masses)
        a.set_velocities(state.velocities)
        results = {"energy": state.energy, "forces": state.forces}
        if np.asarray(state.pbc).all():
            kin = np.einsum("i,ij,ik->jk", state.masses, state.velocities, state.velocities)
            results["stress"] = full_3x3_to_voigt_6_stress(-(np.asarray(state.virial) + kin) / abs(np.linalg.det(state.cell)))
        a.calc = SinglePointCalculator(a, **results)
        a.info.update(step=state.step, time_fs=state.time_fs)
        buf = io.StringIO()
        write(buf, a, format="extxyz")
        with open(self.path, "a") as fh:  # one write per frame: a crash leaves at most one partial frame (cut_back drops it)
            fh.write(buf.getvalue())

    def close(self) -> None:
        pass
