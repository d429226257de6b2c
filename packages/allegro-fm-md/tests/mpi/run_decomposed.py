"""Run the same drifting LJ argon NVE on however many MPI ranks this is launched with; rank 0 saves
final ids, positions, velocities, forces and the energy history to the npz path given as argv[1]."""

from __future__ import annotations

import sys

import numpy as np
from allegro_fm_md.comm import world
from allegro_fm_md.forces import DistributedForceEvaluator
from allegro_fm_md.integrators import State, VelocityVerlet
from allegro_fm_md.reference import LennardJones
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

out, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300
comm = world()
a = bulk("Ar", "fcc", a=5.30, cubic=True) * (3, 3, 3)
a.set_cell(a.cell @ np.array([[1, 0.06, 0], [0, 1, 0.04], [0, 0, 1]]), scale_atoms=True)  # triclinic
MaxwellBoltzmannDistribution(a, temperature_K=50, rng=np.random.default_rng(0))
Stationary(a)
v = a.get_velocities() + np.array([0.02, 0.013, -0.017]) * 10.18  # + a drift of ~0.03 A/fs: atoms cross ranks
# every rank starts from the whole system and keeps what migration gives it
state = State(a.positions.copy(), v, a.get_masses(), np.array(a.cell), a.pbc.copy(),
              ids=np.arange(len(a)), types=np.zeros(len(a), np.int64))
if comm.rank != 0:  # only rank 0 holds atoms initially; migration distributes them
    state.positions, state.velocities, state.masses = state.positions[:0], state.velocities[:0], state.masses[:0]
    state.ids, state.types = state.ids[:0], state.types[:0]
pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
ev = DistributedForceEvaluator(pot, comm, state.cell, skin=0.5)
ev.n_total = len(a)
ev.update(state)
integ = VelocityVerlet(4.0)
etot = []
for _ in range(steps):
    integ.step(state, ev)
    etot.append(state.energy + state.kinetic_energy())
parts = comm.allgather((state.ids, state.positions, state.velocities, state.forces))
if comm.rank == 0:
    ids = np.concatenate([p[0] for p in parts])
    order = np.argsort(ids)
    cat = [np.concatenate([p[k] for p in parts])[order] for k in (1, 2, 3)]
    np.savez(out, ids=ids[order], positions=cat[0], velocities=cat[1], forces=cat[2], etot=np.array(etot),
             cell=state.cell, grid=np.array(ev.dec.grid), builds=ev.builds)
