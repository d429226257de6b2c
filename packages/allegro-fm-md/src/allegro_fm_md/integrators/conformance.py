"""``check_integrator``: the public conformance check of the ``Integrator`` contract (contracts.py), as
``check_potential`` is for potentials; every built-in kind and any plug-in can be checked with it."""

from __future__ import annotations

import copy
import json

import numpy as np
from ase.build import bulk

from ..contracts import ConformanceReport, Integrator
from ..forces import ForceEvaluator
from ..reference import LennardJones
from ..state import State
from ..supercell import maxwell_boltzmann


class IntegratorContractError(AssertionError):
    """An Integrator implementation breaks the contract (the message says which check)."""


def check_integrator(make, steps: int = 40, drift_tol: float = 2e-3) -> ConformanceReport:
    """Check an integrator against the ``Integrator`` contract on a thermalised Lennard-Jones argon crystal (108 atoms,
    one rank, 60 K): ``make()`` returns a fresh integrator (for a run-file kind: ``lambda: build_integrator(RunSpec(...))``).

    Checks: the contract's members; each step advances ``step`` by 1 and ``time_fs`` by ``dt_fs``; positions and
    velocities stay finite; ``target_temperature`` is None or a finite K; ``state_dict`` is JSON-serialisable, and a
    fresh integrator that loads it, continuing from a copy of the state, reproduces the second half of the run (what a
    restart needs: stochastic kinds draw counter-based noise or restore ``rng``); when ``conserves_energy``, the
    conserved energy drifts by less than ``drift_tol`` eV per atom over ``steps``. Raises IntegratorContractError."""
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    a.rattle(0.02, seed=1)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.4, cutoff=6.5)
    ids = np.arange(len(a))
    state = State(
        a.positions.copy(),
        maxwell_boltzmann(ids, a.get_masses(), 60.0, 3),
        a.get_masses(),
        np.array(a.cell),
        a.pbc.copy(),
        ids=ids,
        types=np.zeros(len(a), np.int64),
    )
    ev = ForceEvaluator(pot, state.types, skin=1.0)
    ev.update(state)
    integ = make()
    rep = ConformanceReport(len(a), 0)

    def check(ok: bool, name: str, detail: str) -> None:
        rep.require(ok, name, detail, IntegratorContractError, integ)

    check(
        isinstance(integ, Integrator),
        "members",
        "needs dt_fs, rng, conserves_energy, step(), target_temperature(), "
        "converged(), conserved_energy(), state_dict(), load_state_dict() (integrators.IntegratorBase gives defaults)",
    )
    t = integ.target_temperature(0.0)
    check(
        t is None or (np.isfinite(t) and t >= 0),
        "target_temperature",
        f"None or a temperature in K (got {t!r})",
    )
    e0 = integ.conserved_energy(state, ev.comm)
    saved = None
    for k in range(steps):
        if (
            k == steps // 2
        ):  # what a restart holds: the state right after a list rebuild, the integrator's variables
            ev.invalidate()
            d = integ.state_dict()
            check(
                isinstance(json.loads(json.dumps(d)), dict),
                "state_dict is JSON",
                "a dict of JSON values",
            )
            saved = (
                copy.deepcopy(state),
                d,
                None if integ.rng is None else copy.deepcopy(integ.rng.bit_generator.state),
            )
        s0, t0 = state.step, state.time_fs
        integ.step(state, ev)
        check(
            state.step == s0 + 1 and abs(state.time_fs - (t0 + integ.dt_fs)) < 1e-9,
            "step and time advance",
            f"step {s0} -> {state.step}, time {t0} -> {state.time_fs} fs with dt_fs {integ.dt_fs}",
        )
        check(
            np.isfinite(state.positions).all() and np.isfinite(state.velocities).all(),
            "finite state",
            f"at step {state.step}",
        )
    e1 = integ.conserved_energy(state, ev.comm)
    rep.deviations["conserved drift eV/atom"] = abs(e1 - e0) / len(a)
    if integ.conserves_energy:
        check(
            abs(e1 - e0) / len(a) < drift_tol,
            "conserved energy",
            f"drifts by {abs(e1 - e0) / len(a):.3g} eV/atom over "
            f"{steps} steps of {integ.dt_fs} fs (tolerance {drift_tol})",
        )
    st, d, rng = saved
    again = make()
    again.load_state_dict(json.loads(json.dumps(d)))
    if rng is not None:
        again.rng.bit_generator.state = rng
    ev2 = ForceEvaluator(pot, st.types, skin=1.0)
    ev2.update(st)
    while st.step < state.step:
        again.step(st, ev2)
    diff = (st.positions - state.positions) @ np.linalg.inv(state.cell)
    dev = float(
        np.abs((diff - np.round(diff)) @ state.cell).max()
    )  # either run may have wrapped an atom
    rep.deviations["restart positions A"] = dev
    check(
        dev < 1e-8,
        "restart reproduces the run",
        f"positions differ by {dev:.3g} A after resuming from state_dict() at step {steps // 2}",
    )
    return rep
