"""One-rank ``Simulation``: state + integrator + force evaluator, thermo log, guards, restart files.

Thermo columns: step, time (fs), T (K), potential, kinetic and total energy (eV), pressure (GPa) and
the stress tensor (GPa, ASE sign: positive = tensile), atom-steps/s. A guard stops the run with a
message naming step and atom ids when energy or forces are not finite or two atoms come closer than
``min_distance`` (A); the last good state is then on disk as a restart file. Restart files (npz) are
written atomically and resume bit-for-bit (positions, velocities, forces, step, time and the
integrator's random-number state).
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase import units

from .forces import ForceEvaluator
from .integrators import State

RESTART_FORMAT = "allegro-fm-md/restart"
RESTART_VERSION = 1
THERMO_COLUMNS = ("step", "time_fs", "T_K", "pe_eV", "ke_eV", "etot_eV", "p_GPa", "sxx_GPa", "syy_GPa", "szz_GPa",
                  "syz_GPa", "sxz_GPa", "sxy_GPa", "atom_steps_per_s")


class SimulationError(RuntimeError):
    """A guard stopped the run; ``step`` and ``atoms`` say where."""

    def __init__(self, message: str, step: int, atoms: tuple[int, ...] = ()):
        self.step, self.atoms = step, atoms
        super().__init__(f"step {step}: {message}" + (f" (atoms {', '.join(map(str, atoms))})" if atoms else ""))


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class Thermo:
    """One thermo row (units as in THERMO_COLUMNS)."""

    values: tuple

    def line(self) -> str:
        return " ".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in self.values)


class Simulation:
    """Runs ``integrator`` on ``state`` with forces from ``evaluator``; writes ``thermo.log`` and
    ``restart.npz`` into ``outdir`` every ``thermo_every`` / ``restart_every`` steps."""

    def __init__(self, state: State, integrator, evaluator: ForceEvaluator, outdir: str | Path, *,
                 thermo_every: int = 10, restart_every: int = 100, min_distance: float = 0.5, progress: bool = False,
                 trajectory_every: int = 0, numbers: np.ndarray | None = None):
        self.state, self.integrator, self.evaluator = state, integrator, evaluator
        self.outdir = Path(outdir)
        self.outdir.mkdir(parents=True, exist_ok=True)
        self.thermo_every, self.restart_every, self.min_distance = thermo_every, restart_every, min_distance
        self.progress = progress
        self.thermo: list[Thermo] = []
        self.trajectory_every = trajectory_every
        self.writers = []
        if trajectory_every:
            from .trajectory import ExtXYZWriter, H5MDWriter

            if numbers is None:
                raise ValueError("trajectory output needs the atomic numbers (numbers=...)")
            resumed = state.step > 0
            self.writers = [H5MDWriter(self.outdir / "trajectory.h5", numbers, state.pbc, append=resumed),
                            ExtXYZWriter(self.outdir / "trajectory.extxyz", numbers)]
        if not np.isfinite(state.energy) or state.forces.shape != state.positions.shape:
            self._evaluate()
        else:  # resumed state: build the lists at exactly these positions, as the writer did
            state.positions = evaluator.rebuild(state.positions, state.cell, state.pbc)
        self._guard()

    # -- physics ------------------------------------------------------------------------------
    def _evaluate(self) -> None:
        s = self.state
        s.positions, r = self.evaluator.compute(s.positions, s.cell, s.pbc)
        s.forces, s.energy, s.virial = r.forces, r.energy, r.virial

    def stress_GPa(self) -> np.ndarray:
        """Stress tensor (GPa, ASE sign) including the kinetic term; NaN for open boundaries."""
        s = self.state
        if not s.pbc.all():
            return np.full((3, 3), np.nan)
        vol = abs(np.linalg.det(s.cell))
        kin = (s.masses[:, None, None] * s.velocities[:, :, None] * s.velocities[:, None, :]).sum(axis=0)
        return -(s.virial + kin) / vol / units.GPa

    def _guard(self) -> None:
        s = self.state
        if not np.isfinite(s.energy):
            raise SimulationError("potential energy is not finite", s.step)
        bad = np.flatnonzero(~np.isfinite(s.forces).all(axis=1))
        if len(bad):
            raise SimulationError("forces are not finite", s.step, tuple(int(b) for b in bad[:10]))
        ev = self.evaluator
        allpos = ev._all_positions(s.positions)
        ei = ev.verlet.edges(allpos)
        if ei.shape[1]:
            d = np.linalg.norm(allpos[ei[1]] - allpos[ei[0]], axis=1)
            k = int(np.argmin(d))
            if d[k] < self.min_distance:
                owner = np.concatenate([np.arange(len(s.positions)), ev._owner])
                raise SimulationError(f"atoms closer than {self.min_distance} A ({d[k]:.3f} A)", s.step,
                                      (int(ei[0, k]), int(owner[ei[1, k]])))

    # -- output -------------------------------------------------------------------------------
    def _thermo_row(self, rate: float) -> Thermo:
        s = self.state
        ke = s.kinetic_energy()
        st = self.stress_GPa()
        p = -np.trace(st) / 3.0
        return Thermo((s.step, s.time_fs, s.temperature(), s.energy, ke, s.energy + ke, p, st[0, 0], st[1, 1], st[2, 2],
                       st[1, 2], st[0, 2], st[0, 1], rate))

    def _log(self, row: Thermo) -> None:
        self.thermo.append(row)
        path = self.outdir / "thermo.log"
        new = not path.exists()
        with open(path, "a") as fh:
            if new:
                fh.write("# " + " ".join(THERMO_COLUMNS) + "\n")
            fh.write(row.line() + "\n")

    def _snapshot(self) -> tuple[State, dict | None]:
        s = self.state
        rng = getattr(self.integrator, "rng", None)
        copy = State(s.positions.copy(), s.velocities.copy(), s.masses, s.cell.copy(), s.pbc.copy(), step=s.step,
                     time_fs=s.time_fs, forces=s.forces.copy(), energy=s.energy, virial=s.virial.copy(),
                     momentum_conserved=s.momentum_conserved)
        return copy, (rng.bit_generator.state if rng is not None else None)

    def write_restart(self, path: str | Path | None = None, snapshot: tuple[State, dict | None] | None = None) -> Path:
        """Atomically write the full dynamic state (npz): the current one, or a ``_snapshot()``."""
        s, rng_state = snapshot if snapshot is not None else self._snapshot()
        path = Path(path) if path else self.outdir / "restart.npz"
        meta = {"format": RESTART_FORMAT, "version": RESTART_VERSION, "step": s.step, "time_fs": s.time_fs,
                "momentum_conserved": s.momentum_conserved, "integrator": type(self.integrator).__name__,
                "rng_state": rng_state}
        buf = io.BytesIO()
        np.savez(buf, positions=s.positions, velocities=s.velocities, masses=s.masses, cell=s.cell, pbc=s.pbc,
                 forces=s.forces, virial=s.virial, energy=np.array(s.energy), meta=np.array(json.dumps(meta)))
        _atomic_write_bytes(path, buf.getvalue())
        return path

    @staticmethod
    def read_restart(path: str | Path, integrator=None) -> State:
        """The State stored in a restart file (and the integrator's RNG state restored into ``integrator``)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {k: z[k] for k in ("positions", "velocities", "masses", "cell", "pbc", "forces", "virial", "energy")}
        except Exception as exc:  # zipfile/np.load raise many types for a truncated file
            raise ValueError(f"{path}: not a readable restart file ({type(exc).__name__}: {exc})") from exc
        if meta.get("format") != RESTART_FORMAT or meta.get("version") != RESTART_VERSION:
            raise ValueError(f"{path}: not an allegro-fm-md restart file of version {RESTART_VERSION}")
        if integrator is not None and meta.get("rng_state") is not None and hasattr(integrator, "rng"):
            integrator.rng.bit_generator.state = meta["rng_state"]
        return State(arrays["positions"], arrays["velocities"], arrays["masses"], arrays["cell"], arrays["pbc"],
                     step=int(meta["step"]), time_fs=float(meta["time_fs"]), forces=arrays["forces"],
                     energy=float(arrays["energy"]), virial=arrays["virial"], momentum_conserved=bool(meta["momentum_conserved"]))

    def close(self) -> None:
        """Close trajectory files."""
        for w in self.writers:
            w.close()
        self.writers = []

    # -- driver -------------------------------------------------------------------------------
    def run(self, steps: int) -> State:
        """Advance ``steps`` steps. On a guard failure the last good state is written to
        ``restart_last_good.npz`` and SimulationError is raised."""
        n = len(self.state.masses)
        if self.state.step == 0 and not (self.outdir / "thermo.log").exists():
            self._log(self._thermo_row(0.0))
            for w in self.writers:
                w.write(self.state)
        t0, s0 = time.perf_counter(), self.state.step
        bar = None
        if self.progress and steps >= 100:
            try:
                from tqdm.auto import tqdm

                bar = tqdm(total=steps, unit="step", file=sys.stderr)
            except ImportError:
                bar = None
        try:
            for _ in range(steps):
                prev = self._snapshot()
                self.integrator.step(self.state, self.evaluator)
                try:
                    self._guard()
                except SimulationError:
                    self.write_restart(self.outdir / "restart_last_good.npz", prev)
                    raise
                if bar is not None:
                    bar.update(1)
                if self.state.step % self.thermo_every == 0:
                    rate = n * (self.state.step - s0) / max(time.perf_counter() - t0, 1e-12)
                    self._log(self._thermo_row(rate))
                if self.trajectory_every and self.state.step % self.trajectory_every == 0:
                    for w in self.writers:
                        w.write(self.state)
                if self.state.step % self.restart_every == 0:
                    # rebuild lists here so that a run resumed from this file sees identical lists
                    self.state.positions = self.evaluator.rebuild(self.state.positions, self.state.cell, self.state.pbc)
                    self.write_restart()
        finally:
            if bar is not None:
                bar.close()
            for w in self.writers:
                if hasattr(w, "h5"):
                    w.h5.flush()
        return self.state
