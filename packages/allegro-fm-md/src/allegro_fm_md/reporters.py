"""What a Simulation does besides stepping: reporters (thermo log, trajectories, restart files) and guards, as
objects in its lists (OpenMM's reporters; LAMMPS's thermo/dump/restart and its lost-atom checks).

A reporter (contracts.Reporter) has ``every`` (steps; 0: never) and three collective calls: ``start(sim)`` before
the first step of a run (``sim.fresh``: the run starts the output, step 0 and no thermo log yet), ``report(sim,
final)`` after each step that is a multiple of ``every`` and after the last step of a minimisation (``final=True``),
and ``close()``. A guard has ``check(sim)``, called after every step on every rank, and raises ``SimulationError``
naming the step and atoms. Write your own and append it to ``sim.reporters`` / ``sim.guards``: the engine does not change.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import ase.io
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from . import keys as K
from .errors import SimulationError
from .trajectory import ExtXYZWriter, H5MDWriter, ShardWriter

THERMO_COLUMNS = (
    "step",
    "time_fs",
    "T_K",
    "pe_eV",
    "ke_eV",
    "etot_eV",
    "p_GPa",
    "sxx_GPa",
    "syy_GPa",
    "szz_GPa",
    "syz_GPa",
    "sxz_GPa",
    "sxy_GPa",
    "conserved_eV",
    "atom_steps_per_s",
)
#: thermo columns of a committee run (after THERMO_COLUMNS): the largest and the mean per-atom force deviation (eV/A)
FDEV_COLUMNS = ("fdev_max", "fdev_mean")
#: ``[output] per_atom`` names -> the State field each comes from: per-atom energies (eV), per-atom stresses (eV/A^3,
#: ASE's convention -W_i / V: they sum to the stress without its kinetic term), a committee's force deviation (eV/A)
PER_ATOM = {
    "energy": "atomic_energies",
    "stress": "atomic_virials",
    "force_deviation": "force_deviation",
}
PER_ATOM_FIELDS = tuple(PER_ATOM.values())


class ReporterBase:
    """Defaults of the reporter contract: never due, nothing to start, report or close."""

    every: int = 0
    #: True: also reported at the last step of a run that is not a multiple of ``every`` (thermo, trajectories), as
    #: LAMMPS prints thermo at the end of every run
    reports_last_step: bool = False

    def start(self, sim) -> None:
        """Before the first step of ``sim.run`` (collective)."""

    def report(self, sim, final: bool = False) -> None:
        """After a step that is a multiple of ``every``, or after a minimisation's last step (collective)."""

    def close(self) -> None:
        """Release files."""


class Thermo:
    """One thermo row (units as in THERMO_COLUMNS; a committee run adds FDEV_COLUMNS)."""

    def __init__(self, values: tuple, columns: tuple[str, ...] = THERMO_COLUMNS):
        self.values, self.columns = values, columns

    def line(self) -> str:
        return " ".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in self.values)

    def column(self, name: str):
        """The value of column ``name`` (one of ``columns``)."""
        return self.values[self.columns.index(name)]


class ThermoReporter(ReporterBase):
    """thermo.log (rank 0 appends; the header once): one row every ``every`` steps, at step 0 of a fresh run and at the
    end of a minimisation. Rows are also kept in ``rows`` (and ``sim.thermo``) on every rank."""

    reports_last_step = True

    def __init__(self, every: int = 10):
        self.every, self.rows = int(every), []
        self.start_row: Thermo | None = (
            None  # the state this run started from (logged only by a fresh run)
        )

    def start(self, sim) -> None:
        self.start_row = sim.thermo_row(0.0)
        if sim.fresh:
            self._log(sim, self.start_row)

    def report(self, sim, final: bool = False) -> None:
        if sim.state.step % self.every == 0 or final:
            self._log(sim, sim.thermo_row(sim.rate()))

    def _log(self, sim, row: Thermo) -> None:
        self.rows.append(row)
        if not sim.root:
            return
        path = sim.outdir / "thermo.log"
        new = not path.exists()
        with open(path, "a") as fh:
            if new:
                fh.write("# " + " ".join(row.columns) + "\n")
            fh.write(row.line() + "\n")


class TrajectoryReporter(ReporterBase):
    """trajectory.h5md (H5MD) and trajectory.extxyz, written by rank 0 from the gathered system every ``every`` steps
    (and at step 0 of a fresh run); appended to when the run resumes. The H5MD file is flushed after every frame.
    ``per_atom``: names of PER_ATOM written with each frame."""

    reports_last_step = True

    def __init__(
        self,
        every: int,
        outdir: Path,
        numbers: np.ndarray,
        pbc: np.ndarray,
        root: bool,
        resumed: bool,
        per_atom: tuple[str, ...] = (),
    ):
        self.every = int(every)
        self._open = (outdir, numbers, pbc, resumed, tuple(per_atom)) if root else None
        self.writers: list = []  # opened by start(): no file exists before the starting state passed the guards

    def start(self, sim) -> None:
        if self._open is not None and not self.writers:
            outdir, numbers, pbc, resumed, per_atom = self._open
            self.writers = [
                H5MDWriter(
                    outdir / "trajectory.h5md", numbers, pbc, append=resumed, per_atom=per_atom
                ),
                ExtXYZWriter(outdir / "trajectory.extxyz", numbers, per_atom=per_atom),
            ]
        if sim.fresh:
            self._write(sim)

    def report(self, sim, final: bool = False) -> None:
        if sim.state.step % self.every == 0 or final:
            self._write(sim)

    def _write(self, sim) -> None:
        g = sim.gathered()
        for w in self.writers:
            w.write(g)

    def close(self) -> None:
        for w in self.writers:
            w.close()
        self.writers = []


class ShardedTrajectoryReporter(ReporterBase):
    """trajectory.shards/: every rank appends its own atoms every ``every`` steps (and at step 0 of a fresh run); no
    gather. ``allegro-fm-md merge`` (trajectory.merge_shards) makes one H5MD or extxyz of it."""

    reports_last_step = True

    def __init__(
        self, every: int, outdir: Path, species: tuple[str, ...], pbc, comm, resumed: bool
    ):
        self.every = int(every)
        self._open = (outdir / "trajectory.shards", species, pbc, comm, resumed)
        self.writer = None

    def start(self, sim) -> None:
        if self.writer is None:
            folder, species, pbc, comm, resumed = self._open
            rank, size = comm.rank, comm.size
            index = folder / K.INDEX_FILE
            if resumed and index.exists() and json.loads(index.read_text()).get(K.SHARDS) != size:
                folder = folder.with_name(
                    f"{folder.name}-from-step-{sim.state.step}"
                )  # other rank count: a new part
                resumed = False
            self.writer = ShardWriter(folder, rank, size, species, pbc, append=resumed)
        if sim.fresh:
            self.writer.write(sim.state)

    def report(self, sim, final: bool = False) -> None:
        if sim.state.step % self.every == 0 or final:
            self.writer.write(sim.state)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class RestartReporter(ReporterBase):
    """restart.npz every ``every`` steps and at the end of a minimisation. The lists are rebuilt and the forces
    recomputed first, so that a run resumed from the file is identical to one that went on."""

    def __init__(self, every: int = 100):
        self.every = int(every)

    def report(self, sim, final: bool = False) -> None:
        sim.evaluator.invalidate()
        sim.evaluator.update(sim.state)
        sim.write_restart()


class FiniteGuard:
    """Stops the run when positions, velocities, forces, the potential energy, the cell or the temperature are not
    finite, naming the step, the quantity and (per-atom quantities) up to 10 atom ids."""

    def check(self, sim) -> None:
        s = sim.state
        names = ("positions", "velocities", "forces")
        bad = [s.ids[~np.isfinite(x).all(axis=1)] for x in (s.positions, s.velocities, s.forces)]
        with np.errstate(over="ignore"):
            ke_ok = bool(np.isfinite(np.sum(s.masses[:, None] * s.velocities**2)))
        parts = sim.comm.allgather((bad, ke_ok))  # one collective per step for all of it
        bad = [np.concatenate([p[0][k] for p in parts]) for k in range(3)]
        ke_ok = all(p[1] for p in parts)
        for name, ids in zip(names, bad, strict=True):
            if len(ids):
                raise SimulationError(
                    f"{name} are not finite", s.step, tuple(int(b) for b in np.sort(ids)[:10])
                )
        if not np.isfinite(s.cell).all():
            raise SimulationError("the cell is not finite", s.step)
        if not np.isfinite(s.energy):
            raise SimulationError("potential energy is not finite", s.step)
        if not ke_ok:
            raise SimulationError(
                "the temperature is not finite (kinetic energy overflows)", s.step
            )


class MinDistanceGuard:
    """Stops the run when two atoms come closer than ``min_distance`` (A), naming both."""

    def __init__(self, min_distance: float = 0.5):
        self.min_distance = float(min_distance)

    def check(self, sim) -> None:
        d, i, j = sim.evaluator.closest_pair(sim.state)
        if d < self.min_distance:
            raise SimulationError(
                f"atoms closer than {self.min_distance} A ({d:.3f} A)",
                sim.state.step,
                tuple(sorted((i, j))),
            )


#: a committee run's recorded structures ([run] fdev_record), in the output folder
UNCERTAIN_FILE = "uncertain.extxyz"
#: systems of up to this many atoms are recorded whole (periodic, as they run); larger ones as cut-outs
WHOLE_FRAME_ATOMS = 1000
#: the most cut-outs recorded at one step (the atoms of largest deviation first)
MAX_CUTOUTS = 10


class ForceDeviationGuard:
    """Acts on a committee's per-atom force deviation (eV/A) after every step (collective: one allgather).

    ``record`` > 0: atoms above it are written to ``uncertain.extxyz`` in the output folder, at most once every
    ``every`` steps (and always at a stop): the whole frame for systems of up to WHOLE_FRAME_ATOMS atoms, else a
    cut-out per atom (itself and its neighbours within the cutoff, as an open cluster, up to MAX_CUTOUTS per step, the
    largest deviations first). Each structure is labelled by the committee's mean (energy eV, forces eV/A; a whole
    periodic frame also its stress eV/A^3) with ``info["level_of_theory"]`` the committee's level, and carries the
    per-atom ``force_deviation`` (eV/A), the step and, for a cut-out, the centre atom's id: tea-align reads it
    (``tea-align convert``), ``allegro-fm evaluate`` scores a model on it, a DFT code can relabel it.
    ``stop`` > 0: an atom above it stops the run (SimulationError naming the step and up to 10 atoms; the Simulation
    writes the last good state), after the structure is recorded."""

    def __init__(
        self,
        record: float = 0.0,
        stop: float = 0.0,
        every: int = 1,
        species: tuple[str, ...] = (),
        level_of_theory: str = "unknown",
    ):
        self.record, self.stop, self.every = float(record), float(stop), max(int(every), 1)
        self.species, self.level_of_theory = tuple(species), str(level_of_theory)
        self.last_recorded: int | None = None
        self.recorded = 0  # structures written so far (rank 0)

    def check(self, sim) -> None:
        s = sim.state
        fd = s.force_deviation
        if fd is None:
            return
        rec = fd > self.record if self.record > 0 else np.zeros(len(fd), bool)
        over = fd > self.stop if self.stop > 0 else np.zeros(len(fd), bool)
        parts = sim.comm.allgather((s.ids[rec], fd[rec], s.ids[over], fd[over]))
        rec_ids, rec_fd, stop_ids, stop_fd = (
            np.concatenate([p[k] for p in parts]) for k in range(4)
        )
        due = len(rec_ids) and (
            self.last_recorded is None or s.step - self.last_recorded >= self.every or len(stop_ids)
        )
        if due:
            self._record(sim, rec_ids, rec_fd)
            self.last_recorded = s.step
        if len(stop_ids):
            worst = np.argsort(-stop_fd)[:10]
            raise SimulationError(
                f"committee force deviation {stop_fd.max():.3g} eV/A above fdev_stop = {self.stop:g} eV/A: the "
                "model is extrapolating (structures in uncertain.extxyz when fdev_record is set)",
                s.step,
                tuple(int(i) for i in stop_ids[worst]),
            )

    def _record(self, sim, ids: np.ndarray, fds: np.ndarray) -> None:
        """Write the flagged atoms' structures (collective)."""
        s = sim.state
        frames = []
        if s.n_global(sim.comm) <= WHOLE_FRAME_ATOMS:
            g = sim.gathered()
            if sim.root:
                types = g.types if g.types is not None else sim.evaluator.types
                a = Atoms(
                    [self.species[t] for t in types], positions=g.positions, cell=g.cell, pbc=g.pbc
                )
                labels = {"energy": g.energy, "forces": g.forces}
                if np.asarray(g.pbc).all():
                    labels["stress"] = -np.asarray(g.virial) / abs(np.linalg.det(g.cell))
                frames.append((a, labels, g.force_deviation, {"kind": "frame"}))
        else:
            chosen = set(ids[np.argsort(-fds)[:MAX_CUTOUTS]].tolist())
            local = [int(k) for k in np.flatnonzero(np.isin(s.ids, list(chosen)))]
            mine = [self._cutout(sim, k) for k in local]
            frames = [f for part in sim.comm.allgather(mine) for f in part]
            frames.sort(key=lambda f: -f[3]["fdev_centre"])
        if sim.root and frames:
            self._write(sim, frames)

    def _cutout(self, sim, k: int):
        """Local atom ``k`` and its neighbours within the cutoff as an open cluster, labelled by the committee."""
        s, ev = sim.state, sim.evaluator
        pos, types = ev.neighbourhood(s, k)
        pot = ev.potential
        d = np.linalg.norm(pos[None] - pos[:, None], axis=-1)
        i, j = np.nonzero((d < pot.cutoff) & (d > 0))
        r = pot.compute(pos, types, np.stack([i, j]), len(pos))
        fd = (
            pot.force_deviation(r.member_forces)
            if r.member_forces is not None
            else np.zeros(len(pos))
        )
        a = Atoms([self.species[t] for t in types], positions=pos - pos[0])
        a.center(vacuum=pot.cutoff)
        info = {
            "kind": "cutout",
            "centre_id": int(s.ids[k]),
            "fdev_centre": float(s.force_deviation[k]),
        }
        return (a, {"energy": float(r.energy), "forces": np.asarray(r.forces)}, fd, info)

    def _write(self, sim, frames) -> None:
        buf = io.StringIO()
        for a, labels, fd, info in frames:
            a.calc = SinglePointCalculator(a, **labels)
            a.arrays["force_deviation"] = np.asarray(fd, dtype=np.float64)
            a.info.update(
                step=sim.state.step,
                time_fs=sim.state.time_fs,
                level_of_theory=self.level_of_theory,
                fdev_max=float(np.max(fd, initial=0.0)),
                **info,
            )
            ase.io.write(buf, a, format="extxyz")
        with open(
            sim.outdir / UNCERTAIN_FILE, "a"
        ) as fh:  # one write per step: cut_back drops a partial one
            fh.write(buf.getvalue())
        self.recorded += len(frames)
