"""Time integration. Internal time unit is ASE's (Angstrom sqrt(amu/eV)); the API speaks fs.

``VelocityVerlet`` (NVE): v += dt/2 F/m; x += dt v; F = F(x); v += dt/2 F/m.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ase import units

from .noise import BAROSTAT, LANGEVIN, standard_normal


@dataclass
class State:
    """Dynamic state: positions A, velocities A/(ASE time), masses amu, cell A (rows), step, time fs."""

    positions: np.ndarray
    velocities: np.ndarray
    masses: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    step: int = 0
    time_fs: float = 0.0
    forces: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    energy: float = float("nan")
    virial: np.ndarray = field(default_factory=lambda: np.zeros((3, 3)))
    #: True when the dynamics conserves total momentum (NVE); a Langevin bath does not.
    momentum_conserved: bool = True
    #: global atom ids and type indices (they travel with atoms between ranks); None on one rank
    ids: np.ndarray | None = None
    types: np.ndarray | None = None

    # Collective quantities take the communicator of the ranks that share the system (``comm`` None or a
    # SerialComm: this process holds every atom). The state itself is a plain record of this rank's atoms.

    def n_global(self, comm=None) -> int:
        """Number of atoms on all ranks."""
        return int(_global_sum(comm, len(self.masses)))

    def dof(self, comm=None) -> int:
        """Degrees of freedom: 3N, less 3 when total momentum is conserved."""
        return max(3 * self.n_global(comm) - (3 if self.momentum_conserved else 0), 1)

    def kinetic_energy(self, comm=None) -> float:
        """eV, over all ranks."""
        return float(_global_sum(comm, 0.5 * float(np.sum(self.masses[:, None] * self.velocities**2))))

    def temperature(self, comm=None) -> float:
        """K, from the kinetic energy and ``dof``."""
        return 2.0 * self.kinetic_energy(comm) / (self.dof(comm) * units.kB)


def _global_sum(comm, x):
    """``x`` summed over the ranks of ``comm`` (``x`` itself when comm is None)."""
    return comm.allreduce(x) if comm is not None else x


class IntegratorBase:
    """Defaults of the ``Integrator`` contract (contracts.py) for deterministic, energy-conserving dynamics:
    no noise generator, never 'converged', conserved quantity E_pot + E_kin, nothing to save in restarts."""

    dt_fs: float = 0.0
    rng: np.random.Generator | None = None
    conserves_energy: bool = True

    def step(self, state: State, evaluator) -> State:  # pragma: no cover - every integrator defines its step
        raise NotImplementedError

    def converged(self, state: State, comm=None) -> bool:
        """Minimisers: True once done (the run stops; collective over ``comm``). Dynamics: never."""
        return False

    def conserved_energy(self, state: State, comm=None) -> float:
        """The thermo log's conserved_eV (eV, collective over ``comm``): E_pot + E_kin unless the integrator extends it."""
        return float(state.energy + state.kinetic_energy(comm))

    def state_dict(self) -> dict:
        """Integrator variables a restart needs (not the per-rank noise state: that is ``rng``)."""
        return {}

    def load_state_dict(self, d: dict) -> None:
        """Restore ``state_dict()``'s output."""


def verlet_step(state: State, evaluator, dt: float, dt_fs: float) -> State:
    """One velocity Verlet step (dt in ASE time units, dt_fs in fs): kick, drift, forces, kick; step and time advance.
    Shared by ``VelocityVerlet`` and the thermostats built around it."""
    state.velocities += 0.5 * dt * state.forces / state.masses[:, None]
    state.positions = state.positions + dt * state.velocities
    evaluator.update(state)  # may move atoms between ranks: use the state's arrays afterwards
    state.velocities += 0.5 * dt * state.forces / state.masses[:, None]
    state.step += 1
    state.time_fs += dt_fs
    return state


class VelocityVerlet(IntegratorBase):
    """NVE velocity Verlet with time step ``dt_fs`` (fs)."""

    def __init__(self, dt_fs: float):
        if not dt_fs > 0:
            raise ValueError(f"time step must be > 0 fs (got {dt_fs})")
        self.dt_fs = float(dt_fs)
        self.dt = self.dt_fs * units.fs

    def step(self, state: State, evaluator) -> State:
        return verlet_step(state, evaluator, self.dt, self.dt_fs)


class Langevin(IntegratorBase):
    """NVT Langevin dynamics, BAOAB splitting (Leimkuhler & Matthews 2013).

    ``temperature_K`` (K, or a callable of time in fs for ramps), ``friction`` in 1/fs, ``seed`` for the
    noise. One force evaluation per step. The noise is counter-based (noise.py): keyed by (seed, step, atom id), so the
    trajectory is the same on any number of ranks and a restart resumes it on any rank count (``rng`` is None).
    """

    def __init__(self, dt_fs: float, temperature_K, friction: float = 0.01, seed: int = 0):
        if not dt_fs > 0 or not friction > 0:
            raise ValueError(f"time step and friction must be > 0 (got {dt_fs} fs, {friction} 1/fs)")
        self.dt_fs, self.dt = float(dt_fs), float(dt_fs) * units.fs
        self.temperature = temperature_K if callable(temperature_K) else (lambda t, T=float(temperature_K): T)
        self.c1 = float(np.exp(-friction * dt_fs))
        self.c2 = float(np.sqrt(1.0 - self.c1**2))
        self.seed = int(seed)
        self.conserves_energy = False  # a heat bath: E_pot + E_kin is reported, not conserved

    def step(self, state: State, evaluator) -> State:
        state.momentum_conserved = False
        inv_m = 1.0 / state.masses[:, None]
        kT = units.kB * self.temperature(state.time_fs + 0.5 * self.dt_fs)
        state.velocities += 0.5 * self.dt * state.forces * inv_m  # B
        pos = state.positions + 0.5 * self.dt * state.velocities  # A
        ids = state.ids if state.ids is not None else np.arange(len(state.masses))
        noise = standard_normal(self.seed, LANGEVIN, state.step, ids)
        state.velocities = self.c1 * state.velocities + self.c2 * np.sqrt(kT * inv_m) * noise  # O
        state.positions = pos + 0.5 * self.dt * state.velocities  # A
        evaluator.update(state)
        state.velocities += 0.5 * self.dt * state.forces / state.masses[:, None]  # B
        state.step += 1
        state.time_fs += self.dt_fs
        return state


class NoseHooverChain(IntegratorBase):
    """NVT by a Nose-Hoover chain (Martyna, Klein & Tuckerman, J. Chem. Phys. 97, 2635 (1992); the
    Trotter splitting of Martyna et al., Mol. Phys. 87, 1117 (1996)) around velocity Verlet.

    ``temperature_K`` (K or a callable of time in fs), ``tdamp_fs``: thermostat period (fs), ``chain``:
    number of thermostats. Deterministic; ``conserved_energy`` is the extended-system energy (eV).
    """

    def __init__(self, dt_fs: float, temperature_K, tdamp_fs: float = 100.0, chain: int = 3):
        if not dt_fs > 0 or not tdamp_fs > 0 or chain < 1:
            raise ValueError(f"need dt > 0 fs, tdamp > 0 fs, chain >= 1 (got {dt_fs}, {tdamp_fs}, {chain})")
        self.dt_fs, self.dt = float(dt_fs), float(dt_fs) * units.fs
        self.temperature = temperature_K if callable(temperature_K) else (lambda t, T=float(temperature_K): T)
        self.tau = float(tdamp_fs) * units.fs
        self.xi = np.zeros(chain)  # thermostat positions (dimensionless)
        self.v_xi = np.zeros(chain)  # thermostat velocities (1 / ASE time)

    def _masses(self, state: State, kT: float, comm) -> np.ndarray:
        q = np.full(len(self.xi), kT * self.tau**2)
        q[0] *= state.dof(comm)
        return q

    def _half_chain(self, state: State, kT: float, comm) -> None:
        """Propagate the chain and scale velocities over dt/2 (kinetic energy and dof summed over ``comm``)."""
        d = 0.5 * self.dt
        m = len(self.xi)
        q = self._masses(state, kT, comm)
        ke2 = 2.0 * state.kinetic_energy(comm)
        dof = state.dof(comm)

        def force(j):
            if j == 0:
                return (ke2 - dof * kT) / q[0]
            return (q[j - 1] * self.v_xi[j - 1] ** 2 - kT) / q[j]

        self.v_xi[m - 1] += 0.5 * d * force(m - 1)
        for j in range(m - 2, -1, -1):
            s = np.exp(-0.25 * d * self.v_xi[j + 1])
            self.v_xi[j] = (self.v_xi[j] * s + 0.5 * d * force(j)) * s
        self.xi += d * self.v_xi
        scale = float(np.exp(-d * self.v_xi[0]))
        state.velocities *= scale
        ke2 *= scale**2
        for j in range(m - 1):
            s = np.exp(-0.25 * d * self.v_xi[j + 1])
            self.v_xi[j] = (self.v_xi[j] * s + 0.5 * d * force(j)) * s
        self.v_xi[m - 1] += 0.5 * d * force(m - 1)

    def step(self, state: State, evaluator) -> State:
        state.momentum_conserved = True  # the chain scales all velocities: total momentum stays zero
        comm = evaluator.comm
        self._half_chain(state, units.kB * self.temperature(state.time_fs), comm)
        verlet_step(state, evaluator, self.dt, self.dt_fs)
        self._half_chain(state, units.kB * self.temperature(state.time_fs), comm)
        return state

    def conserved_energy(self, state: State, comm=None) -> float:
        """E_pot + E_kin + thermostat energy (eV, collective over ``comm``): constant for a constant target temperature."""
        kT = units.kB * self.temperature(state.time_fs)
        q = self._masses(state, kT, comm)
        return float(state.energy + state.kinetic_energy(comm) + 0.5 * np.sum(q * self.v_xi**2)
                     + state.dof(comm) * kT * self.xi[0] + kT * np.sum(self.xi[1:]))

    def state_dict(self) -> dict:
        """Thermostat variables for restart files."""
        return {"xi": self.xi.tolist(), "v_xi": self.v_xi.tolist()}

    def load_state_dict(self, d: dict) -> None:
        self.xi, self.v_xi = np.array(d["xi"], dtype=np.float64), np.array(d["v_xi"], dtype=np.float64)


class _Wrapper(IntegratorBase):
    """An integrator around another (``inner``): its time step and noise, its conserved-energy column (reported,
    not conserved: the wrapper does work on the system) and its restart variables under "inner"."""

    conserves_energy = False

    def __init__(self, inner):
        self.inner, self.dt_fs, self.rng = inner, inner.dt_fs, inner.rng

    def conserved_energy(self, state: State, comm=None) -> float:
        return self.inner.conserved_energy(state, comm)

    def state_dict(self) -> dict:
        return {"inner": self.inner.state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.inner.load_state_dict(d.get("inner", {}))


class UniaxialDeformation(_Wrapper):
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
        lam = (1.0 + self.rate * (state.time_fs + self.dt_fs - self.t0_fs)) / (1.0 + self.strain(state))
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


class CRescaleNPT(_Wrapper):
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

    def __init__(self, inner, pressure_GPa: float = 0.0, compressibility_per_GPa: float = 0.02, taup_fs: float = 1000.0,
                 seed: int = 0, anisotropic: bool = False):
        if not taup_fs > 0 or not compressibility_per_GPa > 0:
            raise ValueError("taup_fs and compressibility_per_GPa must be > 0")
        super().__init__(inner)
        self.anisotropic = bool(anisotropic)
        self.p0 = pressure_GPa * units.GPa  # eV/A^3
        self.beta = compressibility_per_GPa / units.GPa  # A^3/eV
        self.tau = taup_fs * units.fs
        self.seed = int(seed)  # counter-based barostat noise (noise.py): the same numbers on every rank, no state to save

    def step(self, state: State, evaluator) -> State:
        vol = abs(np.linalg.det(state.cell))
        comm = evaluator.comm
        ke = state.kinetic_energy(comm)
        p = (2.0 * ke + np.trace(state.virial)) / (3.0 * vol)
        kT = units.kB * self.inner.temperature(state.time_fs)
        dt = self.inner.dt
        lam = np.sqrt(vol)

        draws = iter(standard_normal(self.seed, BAROSTAT, state.step, np.arange(5), 1).ravel())  # <= 5 numbers per step

        def volume_step(lam_now: float, h: float) -> float:  # Euler step of d sqrt(V) over time h
            out = (lam_now - (self.beta * lam / (2.0 * self.tau)) * (self.p0 - p - kT / (2.0 * vol)) * h
                   + np.sqrt(kT * self.beta * h / (2.0 * self.tau)) * next(draws))
            if not out > 0:
                raise FloatingPointError(f"step {state.step}: the barostat collapsed the cell (pressure {p / units.GPa:.3g} GPa); "
                                         "use a smaller compressibility_per_GPa or a longer taup_fs")
            return out

        if not self.anisotropic:
            mu = float((volume_step(lam, dt) / lam) ** (2.0 / 3.0))
        else:
            kin = np.asarray(_global_sum(comm, np.einsum("i,ij,ik->jk", state.masses, state.velocities, state.velocities)))
            pdiag = np.diag(kin + np.asarray(state.virial)) / vol
            lam_half = volume_step(lam, dt / 2)
            r = np.array([next(draws) for _ in range(3)])
            dev = ((self.beta / (3.0 * self.tau)) * (pdiag - pdiag.mean()) * dt
                   + np.sqrt(2.0 * self.beta * kT * dt / (3.0 * self.tau)) / lam_half * (r - r.mean()))
            lam_new = volume_step(lam_half, dt / 2)
            mu = np.exp(dev) * (lam_new / lam) ** (2.0 / 3.0)  # scale factors along x, y, z
        state.cell = state.cell * mu
        state.positions = state.positions * mu
        state.velocities = state.velocities / mu
        return self.inner.step(state, evaluator)

    def state_dict(self) -> dict:
        return {"seed": self.seed, **super().state_dict()}

    def load_state_dict(self, d: dict) -> None:
        self.seed = int(d.get("seed", self.seed))  # files of the stateful generator (version <= 0.1.0.dev0) keep the run's seed
        super().load_state_dict(d)
