"""Energy minimisation: FIRE over MPI ranks (positions), and cell + positions through ASE on one rank.

``FIRE`` is Bitzek et al., PRL 97, 170201 (2006) in the exact form of ase.optimize.FIRE (same
defaults, same steps), written here because ASE's optimiser cannot sum over MPI ranks: dot products
and norms are global, each rank moves its own atoms (``state.velocities`` hold FIRE's velocity, so
they migrate with the atoms). With the cell free, ``relax_cell`` runs ase.optimize.FIRE on a
FrechetCellFilter with the engine as an ASE calculator (one rank). Units: eV, Angstrom.
"""

from __future__ import annotations

import numpy as np
from ase import units
from ase.calculators.calculator import Calculator, all_changes
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE as AseFIRE
from ase.stress import full_3x3_to_voigt_6_stress

from .comm import SERIAL, _max_op
from .forces import ForceEvaluator


class FIRE:
    """FIRE minimiser (ASE's defaults: dt 0.1, maxstep 0.2 A, dtmax 1.0, Nmin 5, finc 1.1, fdec 0.5, a 0.1, fa 0.99)."""

    def __init__(
        self,
        dt: float = 0.1,
        maxstep: float = 0.2,
        dtmax: float = 1.0,
        n_min: int = 5,
        finc: float = 1.1,
        fdec: float = 0.5,
        astart: float = 0.1,
        fa: float = 0.99,
    ):
        self.dt, self.maxstep, self.dtmax, self.n_min = dt, maxstep, dtmax, n_min
        self.finc, self.fdec, self.astart, self.fa = finc, fdec, astart, fa
        self.a = astart
        self.n_pos = 0
        self.started = False
        self.steps = 0

    @staticmethod
    def _sum(comm, x: float) -> float:
        return float(comm.allreduce(x))

    @staticmethod
    def fmax(state, comm=SERIAL) -> float:
        """Largest force norm over all atoms (eV/A) and the ranks of ``comm``."""
        local = float(np.sqrt((state.forces**2).sum(axis=1)).max(initial=0.0))
        return float(comm.allreduce(local, op=_max_op(comm)))

    def step(self, state, evaluator) -> None:
        f, v, comm = state.forces, state.velocities, evaluator.comm
        if not self.started:
            v[:] = 0.0
            self.started = True
        else:
            vf = self._sum(comm, float(np.vdot(f, v)))
            if vf > 0.0:
                fnorm = np.sqrt(self._sum(comm, float(np.vdot(f, f))))
                vnorm = np.sqrt(self._sum(comm, float(np.vdot(v, v))))
                v[:] = (1.0 - self.a) * v + self.a * f / max(fnorm, 1e-300) * vnorm
                if self.n_pos > self.n_min:
                    self.dt = min(self.dt * self.finc, self.dtmax)
                    self.a *= self.fa
                self.n_pos += 1
            else:
                v[:] = 0.0
                self.a = self.astart
                self.dt *= self.fdec
                self.n_pos = 0
        v += self.dt * f
        dr = self.dt * v
        norm = np.sqrt(self._sum(comm, float(np.vdot(dr, dr))))
        if norm > self.maxstep:
            dr *= self.maxstep / norm
        state.positions = state.positions + dr
        state.velocities = v
        evaluator.update(state)
        self.steps += 1

    def run(self, state, evaluator, fmax: float = 0.05, steps: int = 1000) -> bool:
        """Minimise until every force is below ``fmax`` (eV/A) or ``steps`` steps; True if converged."""
        if state.forces.shape != state.positions.shape:
            evaluator.update(state)
        for _ in range(steps):
            if self.fmax(state, evaluator.comm) < fmax:
                break
            self.step(state, evaluator)
        state.velocities[:] = 0.0
        return self.fmax(state, evaluator.comm) < fmax


class EngineCalculator(Calculator):
    """The engine's one-rank force evaluation (any Potential) as an ASE calculator: energy (eV), forces
    (eV/A), stress (eV/A^3, from the virial)."""

    implemented_properties = ["energy", "forces", "stress"]

    def __init__(self, potential, skin: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.potential, self.skin = potential, skin

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        ev = ForceEvaluator(
            self.potential, self.potential.types_of(a.get_chemical_symbols()), skin=self.skin
        )
        _, r = ev.compute(a.positions.copy(), np.array(a.cell), a.pbc)
        self.results["energy"] = self.results["free_energy"] = r.energy
        self.results["forces"] = r.forces
        if a.pbc.all():
            self.results["stress"] = full_3x3_to_voigt_6_stress(-r.virial / a.get_volume())


def relax_cell(
    atoms,
    potential,
    fmax: float = 0.05,
    steps: int = 500,
    cell: bool = True,
    pressure_GPa: float = 0.0,
    logfile: str | None = None,
    return_steps: bool = False,
):
    """Relax positions (and the cell, at ``pressure_GPa``) of a copy of ``atoms`` with ase.optimize.FIRE;
    returns (relaxed atoms, converged) or, with ``return_steps``, (atoms, converged, steps). ``logfile``: ASE's
    optimizer log (step, time, energy eV, fmax eV/A)."""
    a = atoms.copy()
    a.calc = EngineCalculator(potential)
    target = FrechetCellFilter(a, scalar_pressure=pressure_GPa * units.GPa) if cell else a
    opt = AseFIRE(target, logfile=logfile)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return (a, converged, opt.nsteps) if return_steps else (a, converged)
