"""Run the same drifting NVE on however many MPI ranks this is launched with; rank 0 saves final ids,
positions, velocities, forces and the energy history to the npz path given as argv[1].

argv: OUT.npz [STEPS] [lj|allegro]. ``lj``: triclinic LJ argon (108 atoms, 4 fs steps). ``allegro``:
a tiny float64 Allegro-FM model (identical random weights on every rank) on triclinic CaO (216 atoms,
1 fs steps); needs allegro-fm-model, which the engine itself never imports."""

from __future__ import annotations

import os
import sys

import numpy as np
from allegro_fm_md.comm import world
from allegro_fm_md.forces import DistributedForceEvaluator
from allegro_fm_md.integrators import CRescaleNPT, Langevin, NoseHooverChain, State, VelocityVerlet
from allegro_fm_md.reference import LennardJones
from ase.build import bulk
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary

out, steps = sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 300
kind = sys.argv[3] if len(sys.argv) > 3 else "lj"
comm = world()
if kind == "slab":  # LJ argon (111) slab, open along z: 2 ranks split it along z, across the vacuum
    from ase.build import fcc111

    a = fcc111("Ar", size=(4, 4, 8), a=5.30, vacuum=7.0, orthogonal=False)
    a.pbc = (True, True, False)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    dt = 4.0
elif (
    kind == "thin"
):  # LJ argon 4 x 3 x 3 cells: x is 3.3 cutoffs long; GRID=8,1,1 makes each subdomain 2.65 A thin
    a = bulk("Ar", "fcc", a=5.30, cubic=True) * (4, 3, 3)
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    dt = 4.0
elif kind in ("lj", "npt", "langevin"):
    a = (
        bulk("Ar", "fcc", a=5.30, cubic=True) * (4, 4, 4)
        if kind == "npt"
        else bulk("Ar", "fcc", a=5.30, cubic=True) * (3, 3, 3)
    )
    pot = LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
    dt = 4.0
else:
    import torch
    from allegro_fm_model import AllegroPotential, build_model, tiny_preset

    a = bulk("CaO", "rocksalt", a=4.81, cubic=True) * (3, 3, 3)
    torch.manual_seed(0)
    model = build_model(tiny_preset(), ("O", "Ca"), dtype="float64", seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(0.2)
    # DEVICE_EDGES=1: the device-edge path (candidates uploaded at rebuilds, filtered in torch) on the CPU device
    pot = AllegroPotential(
        model, ("O", "Ca"), cutoff=5.2, device_edges=bool(os.environ.get("DEVICE_EDGES"))
    )
    dt = 1.0
if os.environ.get(
    "CHUNK_EDGES"
):  # memory-bounded evaluation (chunked.py) must not change the result
    from allegro_fm_md.chunked import ChunkedPotential

    pot = ChunkedPotential(pot, int(os.environ["CHUNK_EDGES"]))
if kind != "slab":
    a.set_cell(
        a.cell @ np.array([[1, 0.06, 0], [0, 1, 0.04], [0, 0, 1]]), scale_atoms=True
    )  # triclinic
MaxwellBoltzmannDistribution(a, temperature_K=50, rng=np.random.default_rng(0))
Stationary(a)
v = (
    a.get_velocities() + np.array([0.02, 0.013, -0.017]) * 10.18
)  # + a drift of ~0.03 A/fs: atoms cross ranks
# every rank starts from the whole system and keeps what migration gives it
state = State(
    a.positions.copy(),
    v,
    a.get_masses(),
    np.array(a.cell),
    a.pbc.copy(),
    ids=np.arange(len(a)),
    types=pot.types_of(a.get_chemical_symbols()),
)
if comm.rank != 0:  # only rank 0 holds atoms initially; migration distributes them
    state.positions, state.velocities, state.masses = (
        state.positions[:0],
        state.velocities[:0],
        state.masses[:0],
    )
    state.ids, state.types = state.ids[:0], state.types[:0]
grid = (
    tuple(int(g) for g in os.environ["GRID"].split(","))
    if os.environ.get("GRID") and comm.size > 1
    else None
)
ev = DistributedForceEvaluator(pot, comm, state.cell, skin=0.5, pbc=state.pbc, grid=grid)
ev.n_total = len(a)
ev.update(state)
if (
    kind == "npt" and not os.environ.get("NVE")
):  # Nose-Hoover chain + isotropic C-rescale barostat at 0.5 GPa: the cell (and the rank grid) change
    integ = CRescaleNPT(
        NoseHooverChain(dt, 50.0, tdamp_fs=100.0),
        pressure_GPa=0.5,
        compressibility_per_GPa=0.05,
        taup_fs=200.0,
        seed=7,
    )  # the same barostat noise on every rank
elif kind == "langevin":  # counter-based noise keyed by atom id: the same on any rank count
    integ = Langevin(dt, 50.0, friction=0.01, seed=3)
else:
    integ = VelocityVerlet(dt)
etot = []
for _ in range(steps):
    integ.step(state, ev)
    etot.append(
        integ.conserved_energy(state, comm)
        if kind == "npt"
        else state.energy + state.kinetic_energy(comm)
    )
parts = comm.allgather((state.ids, state.positions, state.velocities, state.forces))
if comm.rank == 0:
    ids = np.concatenate([p[0] for p in parts])
    order = np.argsort(ids)
    cat = [np.concatenate([p[k] for p in parts])[order] for k in (1, 2, 3)]
    np.savez(
        out,
        ids=ids[order],
        positions=cat[0],
        velocities=cat[1],
        forces=cat[2],
        etot=np.array(etot),
        cell=state.cell,
        grid=np.array(ev.dec.grid),
        builds=ev.builds,
    )
