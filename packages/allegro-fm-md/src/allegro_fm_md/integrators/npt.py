"""``[run.npt]``: NPT by stochastic cell rescaling around a thermostat (Langevin or Nose-Hoover chain)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units

from ..errors import MDInputError
from ..noise import BAROSTAT, standard_normal
from ..state import State
from .base import Wrapper
from .registry import IntegratorKind, register_integrator


class CRescaleNPT(Wrapper):
    """NPT: isotropic stochastic cell rescaling (Bernetti & Bussi, J. Chem. Phys. 153, 114107 (2020))
    around a thermostat (Langevin or Nose-Hoover chain).

    Each step first moves lambda = sqrt(V) by the paper's additive-noise form (its Eq. 7, Euler step)
        d lambda = -(beta_T lambda / (2 tau_p)) (P0 - P - kT / (2 V)) dt + sqrt(kT beta_T dt / (2 tau_p)) N(0, 1)
    (equivalently, in Ito form, d ln V = -(beta_T / tau_p)(P0 - P) dt + sqrt(2 kT beta_T dt / (V tau_p)) N(0, 1);
    the kT/V term of the paper's Eq. 5 belongs to its equation for V, not ln V), scales cell and positions by
    (V'/V)^(1/3) and velocities by its inverse, then runs the thermostat step. ``pressure_GPa`` P0,
    ``compressibility_per_GPa`` beta_T (only sets the coupling strength: 0.01-0.05 /GPa for oxides, 0.45 /GPa
    for water), ``taup_fs`` the relaxation time. The
    barostat noise is counter-based (noise.py, keyed by seed and step): the same on every rank and after a restart on
    any rank count.

    ``anisotropic=True``: the x, y and z lengths move independently under a hydrostatic P0 (Del Tatto, Raiteri,
    Bernetti & Bussi, Appl. Sci. 12, 1139 (2022), their orthorhombic scheme): the volume by two half steps of
    the equation above around a volume-preserving scaling exp((beta_T / (3 tau_p)) (P_ii - tr P / 3) dt +
    sqrt(2 beta_T kT dt / (3 tau_p V')) R~_i), with R~ a traceless normal vector; P_ii from the instantaneous
    kinetic and virial tensors. Cell rows and positions are scaled along the Cartesian axes.
    """

    def __init__(
        self,
        inner,
        pressure_GPa: float = 0.0,
        compressibility_per_GPa: float = 0.02,
        taup_fs: float = 1000.0,
        seed: int = 0,
        anisotropic: bool = False,
    ):
        if not taup_fs > 0 or not compressibility_per_GPa > 0:
            raise ValueError("taup_fs and compressibility_per_GPa must be > 0")
        if inner.target_temperature(0.0) is None:
            raise ValueError(
                "the barostat needs a thermostat inside it (Langevin or Nose-Hoover chain)"
            )
        super().__init__(inner)
        self.anisotropic = bool(anisotropic)
        self.p0 = pressure_GPa * units.GPa  # eV/A^3
        self.beta = compressibility_per_GPa / units.GPa  # A^3/eV
        self.tau = taup_fs * units.fs
        self.seed = int(
            seed
        )  # counter-based barostat noise (noise.py): the same numbers on every rank, no state to save

    def step(self, state: State, evaluator) -> State:
        vol = abs(np.linalg.det(state.cell))
        comm = evaluator.comm
        ke = state.kinetic_energy(comm)
        p = (2.0 * ke + np.trace(state.virial)) / (3.0 * vol)
        kT = units.kB * self.inner.target_temperature(state.time_fs)
        dt = self.inner.dt_fs * units.fs
        lam = np.sqrt(vol)

        draws = iter(
            standard_normal(self.seed, BAROSTAT, state.step, np.arange(5), 1).ravel()
        )  # <= 5 numbers per step

        def volume_step(lam_now: float, h: float) -> float:  # Euler step of d sqrt(V) over time h
            out = (
                lam_now
                - (self.beta * lam / (2.0 * self.tau)) * (self.p0 - p - kT / (2.0 * vol)) * h
                + np.sqrt(kT * self.beta * h / (2.0 * self.tau)) * next(draws)
            )
            if not out > 0:
                raise FloatingPointError(
                    f"step {state.step}: the barostat collapsed the cell (pressure {p / units.GPa:.3g} GPa); "
                    "use a smaller compressibility_per_GPa or a longer taup_fs"
                )
            return out

        if not self.anisotropic:
            mu = float((volume_step(lam, dt) / lam) ** (2.0 / 3.0))
        else:
            kin = state.kinetic_tensor(comm)
            pdiag = np.diag(kin + np.asarray(state.virial)) / vol
            lam_half = volume_step(lam, dt / 2)
            r = np.array([next(draws) for _ in range(3)])
            dev = (self.beta / (3.0 * self.tau)) * (pdiag - pdiag.mean()) * dt + np.sqrt(
                2.0 * self.beta * kT * dt / (3.0 * self.tau)
            ) / lam_half * (r - r.mean())
            lam_new = volume_step(lam_half, dt / 2)
            mu = np.exp(dev) * (lam_new / lam) ** (2.0 / 3.0)  # scale factors along x, y, z
        state.cell = state.cell * mu
        state.positions = state.positions * mu
        state.velocities = state.velocities / mu
        return self.inner.step(state, evaluator)

    def state_dict(self) -> dict:
        return {"seed": self.seed, **super().state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.seed = int(
            d.get("seed", self.seed)
        )  # files of the stateful generator (version <= 0.1.0.dev0) keep the run's seed
        super().load_state_dict(d)


@dataclass(frozen=True)
class NPTOptions:
    """``[run.npt]``: target pressure (GPa), compressibility (1/GPa: only the coupling strength), relaxation time (fs),
    "isotropic" or "anisotropic" (x, y, z lengths independent under a hydrostatic target)."""

    #: target pressure (GPa)
    pressure_GPa: float = 0.0
    #: compressibility (1/GPa): sets only how strongly the barostat couples
    compressibility_per_GPa: float = field(default=0.02, metadata={"range": (0.0, None, False)})
    #: barostat relaxation time (fs)
    taup_fs: float = field(default=1000.0, metadata={"range": (0.0, None, False)})
    #: "isotropic", or "anisotropic" (x, y, z lengths independent under a hydrostatic target)
    barostat: str = "isotropic"


def _build(run, o: NPTOptions, inner):
    if inner.target_temperature(0.0) is None:
        raise MDInputError(
            f"[run.npt] (pressure_GPa) needs a thermostat: integrator = langevin or nhc (got {run.integrator!r})"
        )
    if "deform" in run.options:
        raise MDInputError(
            "[run.npt] (pressure_GPa) and [run.deform] (deform_axis) exclude each other"
        )
    if o.barostat not in ("isotropic", "anisotropic"):
        raise MDInputError(f"barostat must be 'isotropic' or 'anisotropic' (got {o.barostat!r})")
    return CRescaleNPT(
        inner,
        o.pressure_GPa,
        o.compressibility_per_GPa,
        o.taup_fs,
        seed=run.seed,
        anisotropic=o.barostat == "anisotropic",
    )


register_integrator(
    IntegratorKind(
        "npt",
        NPTOptions,
        _build,
        modifier=True,
        order=10,
        needs_periodic_cell=True,
        doc="stochastic cell rescaling barostat around the thermostat",
    )
)
