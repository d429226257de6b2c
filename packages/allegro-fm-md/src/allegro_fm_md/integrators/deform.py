"""``[run.deform]``: uniaxial deformation at a constant engineering strain rate around the chosen integrator (the
paper's tensile test: around a thermostat at 300 K)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import MDInputError
from ..state import State
from .base import Wrapper
from .registry import IntegratorKind, register_integrator


class UniaxialDeformation(Wrapper):
    """Deformation at a constant engineering strain rate along a Cartesian ``axis`` (0, 1, 2 = x, y, z),
    wrapped around another integrator (a thermostat, for the paper's tensile test at 300 K).

    Before each step the cell and positions are scaled affinely along ``axis`` so that the box length
    is L0 (1 + rate t); the other directions are held fixed (uniaxial strain). ``rate_per_fs`` in 1/fs
    (1e10 /s = 1e-5 /fs). The stress tensor in the thermo log is the response.
    """

    def __init__(self, inner, axis: int, rate_per_fs: float):
        if axis not in (0, 1, 2):
            raise ValueError(f"axis must be 0, 1 or 2 (got {axis})")
        super().__init__(inner)
        self.axis, self.rate = int(axis), float(rate_per_fs)
        self.t0_fs: float | None = None

    def strain(self, state: State) -> float:
        """Engineering strain applied so far."""
        return 0.0 if self.t0_fs is None else self.rate * (state.time_fs - self.t0_fs)

    def step(self, state: State, evaluator) -> State:
        if self.t0_fs is None:
            self.t0_fs = state.time_fs
        lam = (1.0 + self.rate * (state.time_fs + self.dt_fs - self.t0_fs)) / (
            1.0 + self.strain(state)
        )
        f = np.eye(3)
        f[self.axis, self.axis] = lam
        state.cell = state.cell @ f
        state.positions = state.positions @ f
        return self.inner.step(state, evaluator)

    def state_dict(self) -> dict:
        return {"t0_fs": self.t0_fs, **super().state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.t0_fs = d["t0_fs"]
        super().load_state_dict(d)


@dataclass(frozen=True)
class DeformOptions:
    """``[run.deform]``: the axis ("x", "y" or "z") and the engineering strain rate (1/fs; 1e10 /s = 1e-5 /fs)."""

    #: the stretched axis: "x", "y" or "z"
    deform_axis: str = "x"
    #: engineering strain rate (1/fs; 1e10 /s = 1e-5 /fs)
    strain_rate_per_fs: float = 0.0


def _build(run, o: DeformOptions, inner):
    if o.deform_axis not in ("x", "y", "z"):
        raise MDInputError(f"deform_axis must be x, y or z (got {o.deform_axis!r})")
    return UniaxialDeformation(inner, "xyz".index(o.deform_axis), o.strain_rate_per_fs)


register_integrator(
    IntegratorKind(
        "deform",
        DeformOptions,
        _build,
        modifier=True,
        order=20,
        needs_periodic_cell=True,
        doc="uniaxial deformation at a constant strain rate",
    )
)
