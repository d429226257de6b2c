"""Device benchmark (one GPU or the CPU): atom-steps/s and memory per atom of allegro-fm-md's force evaluation at
1e4, 1e5 and 1e6 atoms, for the shipped mini model and an FM64 model (random weights: the same cost as trained ones),
eager (edges kept on the device, chunks sized to the device's memory) and compiled for the device (.nequip.pt2), next
to the peer TorchSim (torch-sim-atomistic through nequip's NequIPTorchSimCalc, the mini model compiled by
nequip-compile for its "batch" target), all measured in one run. Prepared for a device session:

    python packages/allegro-fm-md/benchmarks/bench_device.py --device cuda [--sizes 10000 100000 1000000] [--steps 5]

Each row: one tobermorite supercell near the size asked, VelocityVerlet steps through the engine's ForceEvaluator
(neighbour list on the host, rebuilt by the skin rule; positions in, forces out per step), median seconds per step
after one warm-up step; memory: the peak above the start (allegro_fm_md.memory.peak_meter: the device allocator's on cuda/xpu, the process's
resident set on the cpu) per atom. TorchSim rows time its model call (neighbour list and model on the device). A size that runs out of memory is
printed as such and the next one is tried. FM64 has no TorchSim row (nequip-compile needs a packaged file).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from allegro_fm_md.memory import peak_meter


def _sync(device):
    import torch

    kind = str(device).split(":")[0]
    if kind != "cpu":
        getattr(torch, kind).synchronize()


def supercell(n_atoms: int):
    """A tobermorite 11 A supercell with about ``n_atoms`` atoms (88 per cell), thermal velocities at 300 K."""
    from allegro_fm_bench.structures import tobermorite_11a
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    k = max(1, round((n_atoms / 88 / 2) ** (1 / 3)))
    a = tobermorite_11a() * (2 * k, 2 * k, max(1, round(n_atoms / 88 / 4 / k / k)))
    MaxwellBoltzmannDistribution(a, temperature_K=300, rng=np.random.default_rng(0))
    return a


def engine_row(pot, atoms, device, steps: int) -> dict:
    from allegro_fm_md import ForceEvaluator, VelocityVerlet
    from allegro_fm_md.chunked import ChunkedPotential

    chunked = ChunkedPotential(pot, None)
    ev = ForceEvaluator(chunked, pot.types_of(atoms.get_chemical_symbols()), skin=1.0)
    with peak_meter(device) as m:
        st = ev.initial_state(atoms)
        integ = VelocityVerlet(0.5)
        times = []
        for _ in range(steps + 1):
            t = time.perf_counter()
            integ.step(st, ev)
            _sync(device)
            times.append(time.perf_counter() - t)
    s = float(np.median(times[1:]))
    return {
        "s_per_step": s,
        "atom_steps_per_s": len(atoms) / s,
        "bytes_per_atom": (m["bytes"] or 0) / len(atoms),
        "chunk_edges": chunked.max_edges,
        "calls": chunked.calls,
    }


def torchsim_row(compiled_batch: Path, atoms, device, steps: int) -> dict:
    import torch
    import torch_sim as ts
    from nequip.integrations.torchsim import NequIPTorchSimCalc

    try:  # nequip's GPU neighbour list where its package is installed, else vesin (CPU and CUDA)
        calc = NequIPTorchSimCalc.from_compiled_model(
            compiled_batch,
            device=device,
            neighborlist_backend="alchemiops" if str(device).startswith("cuda") else "vesin",
        )
    except ImportError:
        calc = NequIPTorchSimCalc.from_compiled_model(
            compiled_batch, device=device, neighborlist_backend="vesin"
        )
    state = ts.io.atoms_to_state(
        [atoms], device=torch.device(device), dtype=torch.float64
    )  # nequip casts to the model dtype
    with peak_meter(device) as m:
        times = []
        for _ in range(steps + 1):
            t = time.perf_counter()
            calc(state)
            _sync(device)
            times.append(time.perf_counter() - t)
    s = float(np.median(times[1:]))
    return {
        "s_per_step": s,
        "atom_steps_per_s": len(atoms) / s,
        "bytes_per_atom": (m["bytes"] or 0) / len(atoms),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default=None, help="cuda, xpu or cpu (default: cuda if available)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--models", nargs="+", default=["mini", "FM64"])
    ap.add_argument("-o", "--output", help="also write the rows as JSON here")
    args = ap.parse_args()

    import torch
    from allegro_fm_model import AllegroPotential, build_model, load_potential, resolve_model
    from allegro_fm_model.compiled import compile_graph_model

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device {device}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads",
        flush=True,
    )
    rows = []
    with tempfile.TemporaryDirectory() as d:
        pots = {}
        for name in args.models:
            eager = (
                load_potential("allegro-fm-mini", device)
                if name == "mini"
                else AllegroPotential(
                    build_model(name, ("H", "C", "O", "Si", "Ca")),
                    ("H", "C", "O", "Si", "Ca"),
                    5.2,
                    device,
                )
            )
            eager.device_edges = (
                True  # edges on the device also when it is the CPU (the path under test)
            )
            t = time.perf_counter()
            comp = load_potential(
                compile_graph_model(eager.model, Path(d) / f"{name}.nequip.pt2", device), device
            )
            print(f"{name}: compiled for {device} in {time.perf_counter() - t:.0f} s", flush=True)
            pots[f"{name} eager"], pots[f"{name} compiled"] = eager, comp
        batch = None
        try:
            import torch_sim  # noqa: F401

            batch = Path(d) / "mini-batch.nequip.pt2"
            cmd = [
                "nequip-compile",
                str(resolve_model("allegro-fm-mini")),
                str(batch),
                "--mode",
                "aotinductor",
                "--device",
                device,
                "--target",
                "batch",
            ]  # (its --inductor-configs passes strings: cpp.threads=1 fails, so on the CPU the peer's
            # kernels keep Inductor's default threads)
            subprocess.run(cmd, check=True, capture_output=True, text=True)
        except ImportError:
            print(
                "TorchSim peer skipped: torch-sim-atomistic is not installed (pip install torch-sim-atomistic)",
                flush=True,
            )
        except subprocess.CalledProcessError as exc:
            print(f"TorchSim peer skipped: nequip-compile failed: {exc.stderr[-500:]}", flush=True)
            batch = None
        print(
            "\n| atoms | model | atom-steps/s | ms/step | memory per atom (KiB) | vs TorchSim |",
            flush=True,
        )
        print("|---|---|---|---|---|---|", flush=True)
        for size in args.sizes:
            atoms = supercell(int(size))
            peer = None
            if batch is not None:
                try:
                    peer = torchsim_row(batch, atoms, device, args.steps)
                    rows.append({"atoms": len(atoms), "model": "mini TorchSim", **peer})
                    print(
                        f"| {len(atoms)} | mini TorchSim (peer) | {peer['atom_steps_per_s']:.0f} | {1e3 * peer['s_per_step']:.1f} | "
                        f"{peer['bytes_per_atom'] / 1024:.1f} | 1 |",
                        flush=True,
                    )
                except (
                    RuntimeError,
                    MemoryError,
                ) as exc:  # torch.OutOfMemoryError is a RuntimeError
                    print(
                        f"| {len(atoms)} | mini TorchSim (peer) | {type(exc).__name__}: {str(exc)[:80]} | | | |",
                        flush=True,
                    )
            for name, pot in pots.items():
                try:
                    r = engine_row(pot, atoms, device, args.steps)
                except (RuntimeError, MemoryError) as exc:
                    print(
                        f"| {len(atoms)} | {name} | {type(exc).__name__}: {str(exc)[:80]} | | | |",
                        flush=True,
                    )
                    continue
                ratio = (
                    f"{r['atom_steps_per_s'] / peer['atom_steps_per_s']:.2f}"
                    if peer and name.startswith("mini")
                    else ""
                )
                rows.append({"atoms": len(atoms), "model": name, **r})
                print(
                    f"| {len(atoms)} | {name} | {r['atom_steps_per_s']:.0f} | {1e3 * r['s_per_step']:.1f} | "
                    f"{r['bytes_per_atom'] / 1024:.1f} | {ratio} |",
                    flush=True,
                )
                if str(device).split(":")[0] != "cpu":
                    getattr(torch, str(device).split(":")[0]).empty_cache()
    if args.output:
        Path(args.output).write_text(json.dumps({"device": device, "rows": rows}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
