"""Rank 1's potential raises at its 12th call (step 10: the restart at step 5 recomputes once); the run
must stop every rank (no hang), naming rank and step.

argv: OUTDIR. Restart files are written every 5 steps: the last good state is on disk."""

from __future__ import annotations

import sys

import numpy as np
from allegro_fm_md.comm import world
from allegro_fm_md.forces import DistributedForceEvaluator
from allegro_fm_md.integrators import State, VelocityVerlet
from allegro_fm_md.reference import LennardJones
from allegro_fm_md.simulation import RankFailure, Simulation, abort_all
from ase.build import bulk


class Flaky(LennardJones):
    calls = 0

    def compute(self, *args, **kw):
        Flaky.calls += 1
        if comm.rank == 1 and Flaky.calls == 12:
            raise FloatingPointError("injected failure on this rank")
        return super().compute(*args, **kw)


comm = world()
a = bulk("Ar", "fcc", a=5.30, cubic=True) * (3, 3, 3)
pot = Flaky(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5)
keep = slice(None) if comm.rank == 0 else slice(0, 0)
st = State(
    a.positions[keep].copy(),
    np.zeros((len(a), 3))[keep],
    a.get_masses()[keep],
    np.array(a.cell),
    a.pbc.copy(),
    ids=np.arange(len(a))[keep],
    types=np.zeros(len(a), int)[keep],
)
ev = DistributedForceEvaluator(pot, comm, st.cell, skin=0.5)
sim = Simulation(st, VelocityVerlet(4.0), ev, sys.argv[1], restart_every=5, thermo_every=5)
try:
    sim.run(50)
except RankFailure as exc:
    abort_all(comm, exc, sys.argv[1])
