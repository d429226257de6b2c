"""What a Simulation does besides stepping: reporters (thermo log, trajectories, restart files) and guards, as
objects in its lists (OpenMM's reporters; LAMMPS's thermo/dump/restart and its lost-atom checks).

A reporter (contracts.Reporter) has ``every`` (steps; 0: never) and three collective calls: ``start(sim)`` before
the first step of a run (``sim.fresh``: the run starts the output, step 0 and no thermo log yet), ``report(sim,
final)`` after each step that is a multiple of ``every`` and after the last step of a minimisation (``final=True``),
and ``close()``. A guard has ``check(sim)``, called after every step on every rank, and raises ``SimulationError``
naming the step and atoms. Write your own and append it to ``sim.reporters`` / ``sim.guards``: the engine does not change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

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
    """One thermo row (units as in THERMO_COLUMNS)."""

    def __init__(self, values: tuple):
        self.values = values

    def line(self) -> str:
        return " ".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in self.values)

    def column(self, name: str):
        """The value of column ``name`` (one of THERMO_COLUMNS)."""
        return self.values[THERMO_COLUMNS.index(name)]


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
                fh.write("# " + " ".join(THERMO_COLUMNS) + "\n")
            fh.write(row.line() + "\n")


class TrajectoryReporter(ReporterBase):
    """trajectory.h5md (H5MD) and trajectory.extxyz, written by rank 0 from the gathered system every ``every`` steps
    (and at step 0 of a fresh run); appended to when the run resumes. The H5MD file is flushed after every frame."""

    reports_last_step = True

    def __init__(
        self,
        every: int,
        outdir: Path,
        numbers: np.ndarray,
        pbc: np.ndarray,
        root: bool,
        resumed: bool,
    ):
        self.every = int(every)
        self._open = (outdir, numbers, pbc, resumed) if root else None
        self.writers: list = []  # opened by start(): no file exists before the starting state passed the guards

    def start(self, sim) -> None:
        if self._open is not None and not self.writers:
            outdir, numbers, pbc, resumed = self._open
            self.writers = [
                H5MDWriter(outdir / "trajectory.h5md", numbers, pbc, append=resumed),
                ExtXYZWriter(outdir / "trajectory.extxyz", numbers),
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
