"""A tobermorite slab with water above it (pbc = T, T, F) in allegro-fm-md, then opened in OVITO and MDAnalysis.

    python examples/slab-water/slab_water.py [-o runs/slab-water] [--steps 200] [--waters 24]

Builds the slab (tobermorite 11 A, 2 x 2 x 1 cells, open along z) with a water layer above it
(``allegro_fm_bench.structures.slab_with_water``), runs NVT (Langevin, 300 K, 0.5 fs) with the shipped
Allegro-FM-mini model, and reads the outputs back: ``trajectory.extxyz`` with OVITO's ``import_file`` (the water's O
atoms above the slab counted per frame), ``trajectory.h5md`` with MDAnalysis (an empty topology of the right size,
then the H5MD file as its trajectory; the recipe of docs/packages/allegro-fm-md.md). OVITO and MDAnalysis are optional:
a reader that is not installed is skipped and said so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ase.io
import h5py
import numpy as np
from allegro_fm_bench.structures import slab_with_water, tobermorite_11a
from allegro_fm_md import RunFile, run
from ase.data import chemical_symbols

RUN = """[system]
structure = "slab.extxyz"
[potential]
kind = "allegro"
model = "allegro-fm-mini"
[run]
integrator = "langevin"
dt_fs = 0.5
steps = {steps}
temperature_K = 300
[run.langevin]
friction_per_fs = 0.01
[output]
dir = "md"
thermo_every = {every}
trajectory_every = {every}
"""


def main(argv: list[str] | None = None) -> dict:
    """Run the example; returns the frames each reader saw and the water O count above the slab (OVITO)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default="runs/slab-water")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--waters", type=int, default=24)
    ap.add_argument(
        "--eager", action="store_true", help="run the model eager (no compile on first use, ~1 min)"
    )
    args = ap.parse_args(argv)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    slab = slab_with_water(tobermorite_11a() * (2, 2, 1), args.waters, gap_A=14.0)
    ase.io.write(out / "slab.extxyz", slab)
    every = max(args.steps // 10, 1)
    text = RUN.format(steps=args.steps, every=every)
    if args.eager:
        text = text.replace(
            'model = "allegro-fm-mini"\n',
            'model = "allegro-fm-mini"\n[potential.options]\ncompile = false\n',
        )
    (out / "run.toml").write_text(text)
    run(RunFile.load(out / "run.toml"), progress=False, overwrite=True)
    md = out / "md"
    seen: dict = {}
    try:
        from ovito.io import import_file  # lazy: optional reader
    except ImportError:
        print("OVITO not installed (pip install ovito): skipped")
    else:
        pipeline = import_file(str(md / "trajectory.extxyz"))
        top = float(slab.positions[: len(slab) - 3 * args.waters, 2].max())
        counts = []
        for k in range(pipeline.source.num_frames):
            data = pipeline.compute(k)
            types = data.particles.particle_types
            names = np.array([types.type_by_id(t).name for t in types[...]])
            z = data.particles.positions[...][:, 2]
            counts.append(int(((names == "O") & (z > top)).sum()))
        seen["ovito_frames"], seen["water_O_above_slab"] = pipeline.source.num_frames, counts
        print(
            f"OVITO: {pipeline.source.num_frames} frames; O atoms above the slab per frame: {counts}"
        )
    try:
        import MDAnalysis as mda  # lazy: optional reader
    except ImportError:
        print("MDAnalysis not installed (pip install MDAnalysis): skipped")
    else:
        with h5py.File(md / "trajectory.h5md") as h5:
            numbers = h5["particles/all/species"][()]
        u = mda.Universe.empty(len(numbers), trajectory=True)
        u.add_TopologyAttr("elements", [chemical_symbols[z] for z in numbers])
        u.load_new(str(md / "trajectory.h5md"))
        ow = u.select_atoms("element O")
        seen["mdanalysis_frames"] = len(u.trajectory)
        print(
            f"MDAnalysis: {len(u.trajectory)} frames, {len(ow)} O atoms, box {u.dimensions[:3].round(2)} A"
        )
    return seen


if __name__ == "__main__":
    main()
