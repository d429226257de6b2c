"""A Simulation (NVE, drifting triclinic LJ argon) on any number of ranks, with thermo, restart and
trajectory output from rank 0. argv: OUTDIR STEPS [RESTART.npz or -] [langevin]."""

from __future__ import annotations

import sys

import numpy as np
from allegro_fm_md.comm import world
from allegro_fm_md.forces import DistributedForceEvaluator
from allegro_fm_md.integrators import Langevin, State, VelocityVerlet
from allegro_fm_md.reference import LennardJones
from allegro_fm_md.simulation import Simulation
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

outdir, steps = sys.argv[1], int(sys.argv[2])
comm = world()
a = bulk("Ar", "fcc", a=5.30, cubic=True) * (3, 3, 3)
a.set_cell(a.cell @ np.array([[1, 0.06, 0], [0, 1, 0.04], [0, 0, 1]]), scale_atoms=True)
pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
# argv[4] == "langevin": Langevin NVT (counter-based noise: resumes on any rank count)
integ = (
    Langevin(4.0, 50.0, friction=0.01, seed=3)
    if len(sys.argv) > 4 and sys.argv[4] == "langevin"
    else VelocityVerlet(4.0)
)
if len(sys.argv) > 3 and sys.argv[3] != "-":
    state = Simulation.read_restart(sys.argv[3], integ, comm)
else:
    MaxwellBoltzmannDistribution(a, temperature_K=50, rng=np.random.default_rng(0))
    Stationary(a)
    v = a.get_velocities() + np.array([0.02, 0.013, -0.017]) * 10.18
    keep = slice(None) if comm.rank == 0 else slice(0, 0)
    state = State(
        a.positions[keep].copy(),
        v[keep],
        a.get_masses()[keep],
        np.array(a.cell),
        a.pbc.copy(),
        ids=np.arange(len(a))[keep],
        types=np.zeros(len(a), np.int64)[keep],
    )
ev = DistributedForceEvaluator(pot, comm, state.cell, skin=0.5)
ev.n_total = len(a)
sim = Simulation(
    state,
    integ,
    ev,
    outdir,
    thermo_every=10,
    restart_every=50,
    trajectory_every=50,
    numbers=a.numbers,
)
sim.run(steps - state.step)
sim.close()
