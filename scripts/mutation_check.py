"""Planted bugs: does the test suite catch them, and with more than one test each?

Each mutation is a realistic one-line bug (a sign, a factor, an off-by-one, a wrong comparison) in the product code.
For each, a copy of the repository's packages and tests is made, the bug is planted in the copy, the tests that could
see it run against the copy (PYTHONPATH puts the copy's sources first), and the failing tests are counted. The goal
(issue 33): every mutation killed by at least two tests, so no bug rests on a single test.

    python scripts/mutation_check.py [--only NAME ...] [--list]

Prints one row per mutation: its name, the tests that failed (killed it) and KILLED x N / SURVIVED. Exits 1 when a
mutation survives or is killed by fewer than two tests. Minutes: each mutation runs its tests once.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MD, TEA, MODEL = "packages/allegro-fm-md", "packages/tea-align", "packages/allegro-fm-model"


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` by ``new`` (exactly once) in ``path`` and run ``tests`` (pytest node ids or files)."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "kinetic stress sign",
        f"{MD}/src/allegro_fm_md/simulation.py",
        "-(s.virial + s.kinetic_tensor(self.comm))",
        "-(s.virial - s.kinetic_tensor(self.comm))",
        (
            f"{MD}/tests/test_thermo_oracles.py",
            f"{MD}/tests/test_runfile.py::test_run_writes_outputs_and_conserves_energy",
            f"{MD}/tests/test_nhc_deform.py::test_uniaxial_deformation_strain_and_stress",
        ),
    ),
    Mutation(
        "stress in kBar, not GPa",
        f"{MD}/src/allegro_fm_md/simulation.py",
        "/ vol / units.GPa",
        "/ vol / (units.GPa / 10)",
        (
            f"{MD}/tests/test_thermo_oracles.py",
            f"{MD}/tests/test_runfile.py::test_cell_relaxation_from_the_run_file_reaches_zero_stress",
            f"{MD}/tests/test_nhc_deform.py::test_uniaxial_deformation_strain_and_stress",
        ),
    ),
    Mutation(
        "TEA stress not scaled",
        f"{TEA}/src/tea_align/alignment.py",
        "stress=batch.stress * scale[:, None, None]",
        "stress=batch.stress",
        (f"{TEA}/tests/test_alignment.py", f"{TEA}/tests/test_three_levels.py"),
    ),
    Mutation(
        "shard frame offsets off by one",
        f"{MD}/src/allegro_fm_md/trajectory.py",
        "a1 = int(off[k + 1]) if k + 1 < len(off)",
        "a1 = int(off[k + 1]) - 1 if k + 1 < len(off)",
        (
            f"{MD}/tests/test_shards.py::test_per_rank_setup_and_merged_trajectory_equal_one_rank",
            f"{MD}/tests/test_shards.py::test_merge_joins_the_parts_of_a_run_resumed_on_another_rank_count",
            f"{MD}/tests/test_outputs.py::test_sharded_resume_cuts_the_shards_back_and_merges_in_order",
        ),
    ),
    Mutation(
        "Verlet second half kick 10 % short",
        f"{MD}/src/allegro_fm_md/integrators/base.py",
        "    state.step += 1\n",
        "    state.velocities -= 0.05 * dt * state.forces / state.masses[:, None]\n    state.step += 1\n",
        (
            f"{MD}/tests/test_nve.py",
            f"{MD}/tests/test_integrator_plugins.py::test_every_built_in_kind_passes_the_conformance_check",
        ),
    ),
    Mutation(
        "Langevin noise amplitude",
        f"{MD}/src/allegro_fm_md/integrators/langevin.py",
        "self.c2 = float(np.sqrt(1.0 - self.c1**2))",
        "self.c2 = float(np.sqrt(1.0 - self.c1))",
        (f"{MD}/tests/test_nvt.py", f"{MD}/tests/test_simulation.py"),
    ),  # the bath's T and free-particle equipartition
    Mutation(
        "degrees of freedom ignore momentum",
        f"{MD}/src/allegro_fm_md/state.py",
        "(3 if self.momentum_conserved else 0)",
        "0",
        (f"{MD}/tests/test_thermo_oracles.py", f"{MD}/tests/test_contracts.py"),
    ),
    Mutation(
        "ghost image shift sign",
        f"{MD}/src/allegro_fm_md/comm.py",
        "fshift = 1.0 if dec.coords[d] == 0 else 0.0",
        "fshift = -1.0 if dec.coords[d] == 0 else 0.0",
        (
            f"{MD}/tests/test_decomposition.py",
            f"{MD}/tests/test_slabs.py",
            f"{MD}/tests/test_runfile.py::test_run_writes_outputs_and_conserves_energy",
        ),
    ),
    Mutation(
        "ghost forces not returned",
        f"{MD}/src/allegro_fm_md/comm.py",
        "np.add.at(f, sw.send_idx, back)",
        "np.add.at(f, sw.send_idx, 0.0 * back)",
        (
            f"{MD}/tests/test_slabs.py",
            f"{MD}/tests/test_runfile.py::test_run_writes_outputs_and_conserves_energy",
            f"{MD}/tests/test_integrator_plugins.py::test_the_engine_makes_only_the_comm_contracts_calls",
        ),
    ),
    Mutation(
        "LJ force sign",
        f"{MD}/src/allegro_fm_md/reference.py",
        "de = 4 * self.epsilon * (-12 * sr6 * sr6 + 6 * sr6) / r",
        "de = -4 * self.epsilon * (-12 * sr6 * sr6 + 6 * sr6) / r",
        (f"{MD}/tests/test_reference_potential.py", f"{MD}/tests/test_nve.py"),
    ),
    Mutation(
        "resume keeps the killed run's rows",
        f"{MD}/src/allegro_fm_md/outputs.py",
        "        if s <= step:",
        "        if s <= step + 2:",
        (
            f"{MD}/tests/test_outputs.py",
            f"{MD}/tests/test_jobcontrol.py::test_nothing_to_do_and_ranks_are_validated",
        ),
    ),
    Mutation(
        "plan counts local atoms as ghosts",
        f"{MD}/src/allegro_fm_md/plan.py",
        "ghosts = np.maximum(box - local, 0)",
        "ghosts = np.maximum(box, 0)",
        (f"{MD}/tests/test_launch.py",),
    ),  # the engine's halo and a hand count
    Mutation(
        "min-distance guard compares the wrong way",
        f"{MD}/src/allegro_fm_md/reporters.py",
        "if d < self.min_distance:",
        "if d > self.min_distance:",
        (f"{MD}/tests/test_bad_states.py", f"{MD}/tests/test_runfile.py"),
    ),
    Mutation(
        "level check skipped",
        f"{MODEL}/src/allegro_fm_model/provenance.py",
        "    if model_lv == data_lv:\n        return",
        "    if True:\n        return",
        (f"{MODEL}/tests/test_level_of_theory.py",),
    ),
    Mutation(
        "restart shard checksum ignored",
        f"{MD}/src/allegro_fm_md/restart.py",
        "if sums is not None and hashlib.sha256(data).hexdigest() != sums[r]:",
        "if False:",
        (
            f"{MD}/tests/test_shards.py::test_a_shard_that_matches_in_size_but_not_in_content_is_named_by_its_checksum",
            f"{MD}/tests/test_shards.py::test_read_restart_shards_checks_each_shard_against_its_checksum",
        ),
    ),
    Mutation(
        "rdf minimum from the raw curve",
        f"{MD}/src/allegro_fm_md/analysis.py",
        'gs = np.convolve(g, np.ones(width) / width, mode="same")',
        "gs = g",
        (
            f"{MD}/tests/test_analysis.py",
            "tests/test_main_job.py::test_main_job_short_run_is_stable",
        ),
    ),
    Mutation(
        "barostat noise 10 % too weak",
        f"{MD}/src/allegro_fm_md/integrators/npt.py",
        "+ np.sqrt(kT * self.beta * h / (2.0 * self.tau)) * next(draws)",
        "+ 0.9 * np.sqrt(kT * self.beta * h / (2.0 * self.tau)) * next(draws)",
        (f"{MD}/tests/test_npt_fluctuations.py",),
    ),
]


def _copy(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.nequip.pt2")
    for name in ("packages", "tests", "examples"):
        shutil.copytree(ROOT / name, dst / name, ignore=ignore)
    for name in ("pyproject.toml",):
        shutil.copy(ROOT / name, dst / name)


def run(m: Mutation) -> list[str]:
    """The tests that fail with ``m`` planted (pytest node ids)."""
    with tempfile.TemporaryDirectory(prefix="mutant-") as tmp:
        dst = Path(tmp)
        _copy(dst)
        path = dst / m.path
        text = path.read_text()
        if text.count(m.old) < 1:
            raise SystemExit(
                f"{m.name}: {m.path} no longer contains {m.old!r}: update the mutation"
            )
        path.write_text(text.replace(m.old, m.new, 1))
        src = os.pathsep.join(str(p) for p in sorted((dst / "packages").glob("*/src")))
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-rf",
                "--no-header",
                *m.tests,
            ],
            cwd=dst,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        return sorted(set(re.findall(r"^FAILED (\S+)", p.stdout, flags=re.M)))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--only", nargs="*", help="names (substrings) of the mutations to run")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for m in chosen:
            print(f"{m.name}: {m.path}")
        return 0
    print("| mutation | killed by | verdict |\n|---|---|---|", flush=True)
    weak = 0
    for m in chosen:
        killed = run(m)
        verdict = f"KILLED x {len(killed)}" if killed else "SURVIVED"
        weak += len(killed) < 2
        print(
            f"| {m.name} | {'<br>'.join(k.split('/')[-1] for k in killed) or '-'} | {verdict} |",
            flush=True,
        )
    print(f"\n{len(chosen) - weak} of {len(chosen)} mutations killed by at least two tests")
    return 1 if weak else 0


if __name__ == "__main__":
    sys.exit(main())
