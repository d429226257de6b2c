"""Benchmark: tea-align fit + apply over N synthetic MPtrj-sized frames (default 1.6 million, ~30 atoms).

Prints wall time, frames/s and peak RSS of each stage (each stage runs in a fresh subprocess so its
peak RSS is its own), the RSS at a smaller N (memory must stay flat in the number of frames), and the
ratio of our throughput to a peer measured in the same run: the per-frame ASE route (ase.io.iread of
extxyz, alignment of each Atoms, ase.io.write of extxyz), timed on a subset.

    python packages/tea-align/benchmarks/bench_fit_apply.py [--frames 1600000] [--workdir /tmp/tea-bench]

Goal (issue #2): fit + apply under 5 minutes and under 2 GiB on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

LEVEL_S, LEVEL_T = "bench-S (periodic, PAW-like)", "bench-T (molecular, all-electron-like)"
ELEMENTS = np.array([1, 6, 8, 14, 20, 12, 26, 13])  # H C O Si Ca Mg Fe Al


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def generate(path: Path, n_frames: int, seed: int = 0, batch: int = 20000) -> None:
    """Write a raw (unaligned) schema-v1 file: 80 % periodic level-S frames, 20 % molecular level-T frames."""
    from tea_align import synthetic
    from tea_align.dataset import DatasetWriter
    from tea_align.frame import FrameBatch, SourceInfo

    rng = np.random.default_rng(seed)
    sources = [
        SourceInfo("mptrj-like", "generated", "bench", LEVEL_S),
        SourceInfo("off-like", "generated", "bench", LEVEL_T),
    ]
    eps = {LEVEL_T: np.zeros(121), LEVEL_S: np.zeros(121)}
    for sym, z in (("H", 1), ("C", 6), ("O", 8), ("Si", 14), ("Ca", 20)):
        eps[LEVEL_T][z], eps[LEVEL_S][z] = synthetic.EPS_T[sym], synthetic.EPS_S[sym]
    for z in (12, 26, 13):
        eps[LEVEL_T][z], eps[LEVEL_S][z] = -1000.0 * z / 10, -z / 10
    with DatasetWriter(path) as w:
        for i0 in range(0, n_frames, batch):
            f = min(batch, n_frames - i0)
            n = rng.integers(20, 41, f)
            off = np.zeros(f + 1, np.int64)
            np.cumsum(n, out=off[1:])
            sid = (rng.random(f) < 0.2).astype(np.int32)
            z = ELEMENTS[rng.integers(0, len(ELEMENTS), off[-1])]
            pos = rng.random((off[-1], 3)) * 10
            frame = np.repeat(np.arange(f), n)
            binding = -3.0 * n + rng.normal(0, 0.05, f) * n
            e = np.where(sid == 0, binding / synthetic.ALPHA, binding)
            e_core = np.bincount(
                frame,
                weights=np.where(sid[frame] == 0, eps[LEVEL_S][z], eps[LEVEL_T][z]),
                minlength=f,
            )
            w.append(
                FrameBatch(
                    numbers=z,
                    positions=pos,
                    forces=rng.normal(0, 1, (off[-1], 3)),
                    offsets=off,
                    cell=np.where(sid[:, None, None] == 0, np.eye(3) * 10, 0.0),
                    pbc=np.repeat((sid == 0)[:, None], 3, 1),
                    energy=e + e_core,
                    energy_raw=e + e_core,
                    stress=np.full((f, 3, 3), np.nan),
                    has_forces=np.ones(f, bool),
                    has_stress=np.zeros(f, bool),
                    source_id=sid,
                    index=np.arange(i0, i0 + f),
                    key=np.array([""] * f, object),
                    sources=sources,
                )
            )


def anchors(path: Path) -> None:
    """Anchor structures of every benchmark element at both levels (from the same synthetic model)."""
    import ase.io
    from ase import Atoms
    from tea_align import synthetic

    rng = np.random.default_rng(1)
    out = []
    for _ in range(40):
        zs = ELEMENTS[rng.integers(0, len(ELEMENTS), 6)]
        at = Atoms(numbers=zs, positions=rng.random((6, 3)) * 4)
        b = -3.0 * len(at) + rng.normal(0, 0.3)
        for lvl in (LEVEL_S, LEVEL_T):
            a = at.copy()
            e_core = 0.0
            for z in zs:
                sym = a.get_chemical_symbols()[list(zs).index(z)]
                e_core += (synthetic.EPS_T if lvl == LEVEL_T else synthetic.EPS_S).get(
                    sym, (-100.0 if lvl == LEVEL_T else -0.1) * z
                )
            from ase.calculators.singlepoint import SinglePointCalculator

            a.calc = SinglePointCalculator(
                a, energy=e_core + (b if lvl == LEVEL_T else b / synthetic.ALPHA)
            )
            a.info["level_of_theory"] = lvl
            out.append(a)
    ase.io.write(path, out, format="extxyz")


def stage(args) -> None:
    """Run one stage in this (fresh) process and print a JSON line with its time and peak RSS."""
    import tea_align

    t0 = time.perf_counter()
    if args.stage == "fit":
        al = tea_align.fit([args.anchors], [args.input], target_level=LEVEL_T)
        al.save(args.alignment)
        extra = {
            "rmse_before_meV": al.statistics["rmse_before"] * 1e3,
            "rmse_after_meV": al.statistics["rmse_after"] * 1e3,
            "scale": al.levels[LEVEL_S].scale,
        }
    elif args.stage == "apply":
        s = tea_align.apply(tea_align.Alignment.load(args.alignment), [args.input], args.output)
        extra = {"frames_written": s.frames}
    elif args.stage == "generate":
        generate(Path(args.output), args.frames)
        extra = {}
    else:  # the per-frame ASE peer on a subset: extxyz in, align each Atoms, extxyz out
        import ase.io

        al = tea_align.Alignment.load(args.alignment)
        ls = al.levels[LEVEL_S]
        shifts = {k: v for k, v in ls.shifts.items()}
        t0 = time.perf_counter()
        n = 0
        with open(args.output, "w") as fh:
            for a in ase.io.iread(args.input, index=":"):
                e = a.get_potential_energy()
                if a.info.get("level_of_theory", LEVEL_S) == LEVEL_S:
                    e = ls.scale * e + sum(shifts[s] for s in a.get_chemical_symbols())
                from ase.calculators.singlepoint import SinglePointCalculator

                a.calc = SinglePointCalculator(a, energy=e, forces=a.get_forces() * ls.scale)
                ase.io.write(fh, a, format="extxyz")
                n += 1
        extra = {"frames": n}
    print(
        json.dumps(
            {
                "stage": args.stage,
                "seconds": time.perf_counter() - t0,
                "peak_rss_mib": _peak_rss_mib(),
                **extra,
            }
        )
    )


def run_stage(*argv) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--stage", *argv], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=1_600_000)
    ap.add_argument(
        "--small", type=int, default=100_000, help="smaller N to show memory is flat in N"
    )
    ap.add_argument("--peer-frames", type=int, default=5_000)
    ap.add_argument("--workdir", default="/tmp/tea-align-bench")
    ap.add_argument("--stage", help=argparse.SUPPRESS)
    ap.add_argument("--input", help=argparse.SUPPRESS)
    ap.add_argument("--output", help=argparse.SUPPRESS)
    ap.add_argument("--anchors", help=argparse.SUPPRESS)
    ap.add_argument("--alignment", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        return stage(args)
    wd = Path(args.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    anchors(wd / "anchors.extxyz")
    results = {}
    for n in (args.small, args.frames):
        raw, al, out = wd / f"raw_{n}.h5", wd / f"al_{n}.json", wd / f"aligned_{n}.h5"
        if not raw.exists():
            g = run_stage("generate", "--frames", str(n), "--output", str(raw))
            print(
                f"generated {n} frames in {g['seconds']:.0f} s ({raw.stat().st_size / 2**30:.2f} GiB)",
                flush=True,
            )
        out.unlink(missing_ok=True)
        fit = run_stage(
            "fit",
            "--input",
            str(raw),
            "--anchors",
            str(wd / "anchors.extxyz"),
            "--alignment",
            str(al),
        )
        app = run_stage("apply", "--input", str(raw), "--alignment", str(al), "--output", str(out))
        results[n] = (fit, app)
        total = fit["seconds"] + app["seconds"]
        print(
            f"N={n}: fit {fit['seconds']:.1f} s ({n / fit['seconds']:.0f} frames/s, peak {fit['peak_rss_mib']:.0f} MiB), "
            f"apply {app['seconds']:.1f} s ({n / app['seconds']:.0f} frames/s, peak {app['peak_rss_mib']:.0f} MiB), "
            f"fit+apply {total:.1f} s = {n / total:.0f} frames/s; scale {fit['scale']:.6f}; "
            f"composition RMSE {fit['rmse_before_meV']:.0f} -> {fit['rmse_after_meV']:.1f} meV/atom",
            flush=True,
        )
    # peer: per-frame ASE route on a subset of the same frames
    import ase.io
    import tea_align

    sub = wd / "peer_in.extxyz"
    with tea_align.open_dataset(wd / f"raw_{args.small}.h5") as ds:
        frames = []
        for b in ds.batches(args.peer_frames, 0, args.peer_frames):
            for f in b:
                a = f.to_ase()
                a.info["level_of_theory"] = f.level_of_theory
                frames.append(a)
    ase.io.write(sub, frames, format="extxyz")
    peer = run_stage(
        "peer",
        "--input",
        str(sub),
        "--alignment",
        str(wd / f"al_{args.small}.json"),
        "--output",
        str(wd / "peer_out.extxyz"),
    )
    peer_rate = peer["frames"] / peer["seconds"]
    fit, app = results[args.frames]
    ours = args.frames / (fit["seconds"] + app["seconds"])
    print(
        f"peer (ase.io extxyz per frame, align, write; {peer['frames']} frames): {peer_rate:.0f} frames/s"
    )
    print(f"ratio tea-align fit+apply / peer apply-only throughput: {ours / peer_rate:.1f}x")
    rss_small = max(r["peak_rss_mib"] for r in results[args.small])
    rss_big = max(r["peak_rss_mib"] for r in results[args.frames])
    print(
        f"peak RSS: {rss_small:.0f} MiB at N={args.small}, {rss_big:.0f} MiB at N={args.frames} "
        f"(ratio {rss_big / rss_small:.2f} for {args.frames / args.small:.0f}x the frames)"
    )
    total = fit["seconds"] + app["seconds"]
    print(
        f"goal: fit+apply < 300 s and < 2048 MiB at N={args.frames}: {'MET' if total < 300 and rss_big < 2048 else 'NOT MET'} "
        f"({total:.0f} s, {rss_big:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
