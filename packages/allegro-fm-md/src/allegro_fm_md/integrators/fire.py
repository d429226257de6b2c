"""``fire``: energy minimisation by FIRE as a Simulation integrator (positions; minimize.py holds the algorithm). Run
file: ``integrator = "fire"``, options ``[run.fire]``; ``relax_cell = true`` relaxes the cell too (through ASE, one
rank: runfile.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..comm import SERIAL
from ..minimize import FIRE
from .base import IntegratorBase
from .registry import IntegratorKind, register_integrator


class FIREIntegrator(IntegratorBase):
    """FIRE as a Simulation integrator (run file ``integrator = "fire"``): one FIRE move per step; the run
    stops early once every force is below ``fmax`` (eV/A). The T column of the thermo log then shows FIRE's
    fictitious velocities, not a temperature."""

    def __init__(self, fmax: float = 0.05, **fire_kwargs):
        self.fire, self.fmax, self.dt_fs = FIRE(**fire_kwargs), float(fmax), 0.0
        self.conserves_energy = False  # a minimiser: energy falls

    def step(self, state, evaluator):
        self.fire.step(state, evaluator)
        state.step += 1
        return state

    def state_dict(self) -> dict:
        """FIRE's adaptive variables (time step, mixing, steps since a reversal): a resumed minimisation continues as
        the unbroken one would (its velocities are the state's)."""
        f = self.fire
        return {"dt": f.dt, "a": f.a, "n_pos": f.n_pos, "started": f.started, "steps": f.steps}

    def load_state_dict(self, d: dict) -> None:
        f = self.fire
        f.dt, f.a, f.n_pos, f.started, f.steps = (
            float(d["dt"]),
            float(d["a"]),
            int(d["n_pos"]),
            bool(d["started"]),
            int(d["steps"]),
        )

    def converged(self, state, comm=SERIAL) -> bool:
        return FIRE.fmax(state, comm) < self.fmax


@dataclass(frozen=True)
class FIREOptions:
    """``[run.fire]``: stop when every force is below ``fmax`` (eV/A; [run] steps is the most FIRE steps); ``relax_cell``:
    the cell too (ASE's FrechetCellFilter, target [run.npt] pressure_GPa or 0; one rank)."""

    #: stop when every force is below this (eV/A)
    fmax: float = field(default=0.05, metadata={"range": (0.0, None, False)})
    #: relax the cell too (ASE's FrechetCellFilter, target [run.npt] pressure_GPa or 0; one rank)
    relax_cell: bool = False


register_integrator(
    IntegratorKind(
        "fire",
        FIREOptions,
        lambda run, o, inner: FIREIntegrator(fmax=o.fmax),
        doc="FIRE energy minimisation (stops at fmax)",
    )
)
