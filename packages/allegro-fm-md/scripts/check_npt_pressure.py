"""NPT check over independent seeds: <P> (GPa) of 27-atom LJ argon at 60 K under C-rescale + Langevin, target 0 GPa.

    python packages/allegro-fm-md/scripts/check_npt_pressure.py [--dt 5] [--seeds 1,2,3,4] [--steps 16000]

Prints <P> per seed with a 10-block error, then the mean over seeds with its standard error (about 2 min per
seed at 16 000 steps on one core). The first 5 ps of each run are discarded.
"""

from __future__ import annotations

import argparse

import numpy as np
from allegro_fm_md.forces import ForceEvaluator
from allegro_fm_md.integrators import CRescaleNPT, Langevin
from allegro_fm_md.reference import LennardJones
from ase import units
from ase.build import bulk


def run(seed: int, dt: float, steps: int) -> np.ndarray:
    """Instantaneous pressures (GPa) after 5 ps of one seed's run."""
    a = bulk("Ar", "fcc", a=5.30) * (3, 3, 3)
    ev = ForceEvaluator(
        LennardJones(["Ar"], epsilon=0.0104, sigma=3.40, cutoff=6.5),
        np.zeros(len(a), int),
        skin=1.0,
    )
    v = np.random.default_rng(seed).normal(0, 1, (len(a), 3)) * np.sqrt(
        units.kB * 60.0 / a.get_masses()[:, None]
    )
    a.set_velocities(v - v.mean(0))  # Maxwell-Boltzmann, no drift
    st = ev.initial_state(a)
    integ = CRescaleNPT(
        Langevin(dt, 60.0, friction=0.02, seed=seed + 100),
        pressure_GPa=0.0,
        compressibility_per_GPa=0.3,
        taup_fs=500.0,
        seed=seed + 200,
    )
    p = []
    for k in range(steps):
        integ.step(st, ev)
        if k * dt >= 5000:
            p.append(
                (2 * st.kinetic_energy() + np.trace(st.virial))
                / (3 * abs(np.linalg.det(st.cell)))
                / units.GPa
            )
    return np.array(p)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dt", type=float, default=5.0)
    ap.add_argument("--seeds", default="1,2,3,4")
    ap.add_argument("--steps", type=int, default=16000)
    args = ap.parse_args()
    means = []
    for sd in (int(x) for x in args.seeds.split(",")):
        p = run(sd, args.dt, args.steps)
        blocks = p[: len(p) // 10 * 10].reshape(10, -1).mean(1)
        means.append(p.mean())
        print(
            f"seed {sd}: <P> = {p.mean():.4f} +- {blocks.std(ddof=1) / np.sqrt(10):.4f} GPa",
            flush=True,
        )
    m = np.array(means)
    print(
        f"mean over {len(m)} seeds: {m.mean():.4f} +- {m.std(ddof=1) / np.sqrt(len(m)):.4f} GPa (target 0)"
    )


if __name__ == "__main__":
    main()
