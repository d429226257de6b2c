"""Integrators plug in like potential kinds: every built-in kind passes the public conformance check; a toy integrator
written outside the engine plugs in through the ``allegro_fm_md.integrators`` entry point (no edit of the engine), is
validated by its own options schema and runs from a run file; the engine's communicator calls are exactly the Comm
contract's (a strict communicator with nothing else runs a sharded, restarted simulation)."""

from __future__ import annotations

import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from allegro_fm_md import (
    MDInputError,
    RunFile,
    RunSpec,
    check_integrator,
    integrator_kinds,
    run,
)
from allegro_fm_md.integrators import (
    IntegratorBase,
    IntegratorContractError,
    VelocityVerlet,
    build_integrator,
)
from ase.build import bulk
from md_testutil import argon_toml

SRC = Path(__file__).resolve().parents[1] / "src" / "allegro_fm_md"


@pytest.mark.parametrize(
    "spec",
    [
        {"integrator": "nve"},
        {"integrator": "langevin", "options": {"langevin": {"friction_per_fs": 0.02}}},
        {"integrator": "nhc", "options": {"nhc": {"tdamp_fs": 50.0}}},
        {"integrator": "fire"},
        {"integrator": "langevin", "options": {"npt": {"pressure_GPa": 0.1}}},
        {
            "integrator": "nhc",
            "options": {"deform": {"deform_axis": "z", "strain_rate_per_fs": 1e-6}},
        },
    ],
    ids=["nve", "langevin", "nhc", "fire", "npt", "deform"],
)
def test_every_built_in_kind_passes_the_conformance_check(spec):
    rep = check_integrator(
        lambda: build_integrator(RunSpec(dt_fs=2.0, steps=40, temperature_K=60.0, **spec))
    )
    assert (
        "restart reproduces the run" in rep.checks and rep.deviations["restart positions A"] < 1e-8
    )
    if spec["integrator"] == "nve":
        assert "conserved energy" in rep.checks and rep.deviations["conserved drift eV/atom"] < 1e-4


def test_the_check_catches_an_integrator_that_forgets_its_restart_variables():
    class Leaky(IntegratorBase):
        """NVE with a velocity scale that grows each step but is not saved: a restart cannot reproduce it."""

        conserves_energy = False

        def __init__(self):
            self.inner, self.dt_fs, self.k = VelocityVerlet(2.0), 2.0, 0

        def step(self, state, evaluator):
            self.k += 1
            state.velocities *= 1.0 + 1e-3 * self.k
            return self.inner.step(state, evaluator)

    with pytest.raises(IntegratorContractError, match="restart reproduces"):
        check_integrator(Leaky)


TOY = '''
"""A toy integrator written outside allegro-fm-md: Berendsen velocity rescaling around velocity Verlet."""
from dataclasses import dataclass, field

from allegro_fm_md.integrators import IntegratorBase, IntegratorKind, VelocityVerlet, temperature_schedule


class Berendsen(IntegratorBase):
    conserves_energy = False

    def __init__(self, dt_fs, temperature, tau_fs):
        self.inner, self.dt_fs, self.tau = VelocityVerlet(dt_fs), dt_fs, tau_fs
        self.temperature = temperature if callable(temperature) else (lambda t, T=temperature: T)

    def target_temperature(self, time_fs):
        return float(self.temperature(time_fs))

    def step(self, state, evaluator):
        self.inner.step(state, evaluator)
        t = state.temperature(evaluator.comm)
        lam = (1.0 + self.dt_fs / self.tau * (self.target_temperature(state.time_fs) / max(t, 1e-9) - 1.0)) ** 0.5
        state.velocities *= lam
        return state


@dataclass(frozen=True)
class Options:
    tau_fs: float = field(default=100.0, metadata={"range": (0.0, None, False)})


KIND = IntegratorKind("berendsen", Options, doc="Berendsen velocity rescaling (toy)",
                      build=lambda run, o, inner: Berendsen(run.dt_fs, temperature_schedule(run), o.tau_fs))
'''


@pytest.fixture
def toy_plugin(tmp_path, monkeypatch):
    """An installed distribution (a dist-info folder on sys.path) whose entry point adds the kind 'berendsen'."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "toy_berendsen.py").write_text(TOY)
    info = site / "toy_berendsen-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-berendsen\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[allegro_fm_md.integrators]\nberendsen = toy_berendsen:KIND\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield "berendsen"
    sys.modules.pop("toy_berendsen", None)


def _run_file(tmp_path, run_table: str, steps: int = 150) -> Path:
    a = bulk("Ar", "fcc", a=5.26, cubic=True) * (3, 3, 3)
    ase.io.write(tmp_path / "ar.extxyz", a)
    f = tmp_path / "run.toml"
    f.write_text(
        argon_toml(
            f"dt_fs = 2.0\nsteps = {steps}\ntemperature_K = 20.0\n{run_table}",
            'dir = "out"\nthermo_every = 10\ntrajectory_every = 0\nrestart_every = 50',
        )
    )
    return f


def test_a_toy_integrator_plugs_in_through_the_entry_point(toy_plugin, tmp_path):
    assert toy_plugin in integrator_kinds()
    kind = integrator_kinds()[toy_plugin]
    rep = check_integrator(
        lambda: kind.build(
            RunSpec(integrator="berendsen", dt_fs=2.0, temperature_K=60.0),
            kind.options(tau_fs=50.0),
            None,
        )
    )
    assert "restart reproduces the run" in rep.checks
    # from a run file, its own table validated by its own schema: the bath ramps from 20 K to 80 K over 0.3 ps and the
    # crystal follows it (tau 20 fs; a lag of some K: half of the heat goes into potential energy)
    rf = RunFile.load(
        _run_file(
            tmp_path,
            'integrator = "berendsen"\ntemperature_end_K = 80.0\n[run.berendsen]\ntau_fs = 20.0',
            steps=150,
        )
    )
    assert rf.run.option("berendsen").tau_fs == 20.0
    sim = run(rf, progress=False)
    t_last = np.mean([row.column("T_K") for row in sim.thermo[-3:]])
    assert sim.thermo[0].column("T_K") < 25.0 and abs(t_last - 80.0) < 15.0, t_last
    with pytest.raises(MDInputError, match=r"\[run.berendsen\] tau_fs"):
        RunFile.load(
            _run_file(tmp_path, 'integrator = "berendsen"\n[run.berendsen]\ntau_fs = -1.0')
        )
    with pytest.raises(MDInputError, match=r"unknown keys in \[run.berendsen\]: \['tau'\]"):
        RunFile.load(_run_file(tmp_path, 'integrator = "berendsen"\n[run.berendsen]\ntau = 1.0'))


def test_kind_tables_and_the_old_flat_keys_are_read_alike(tmp_path):
    """[run.<kind>] tables; 0.1.0.dev1's flat keys go to the kind that declares them; a table for another integrator
    and an unknown integrator are refused naming the kinds."""
    new = RunFile.load(
        _run_file(
            tmp_path,
            'integrator = "langevin"\n[run.langevin]\nfriction_per_fs = 0.05\n[run.npt]\n'
            'pressure_GPa = 1.0\nbarostat = "anisotropic"',
        )
    )
    old = RunFile.load(
        _run_file(
            tmp_path,
            'integrator = "langevin"\nfriction_per_fs = 0.05\npressure_GPa = 1.0\n'
            'barostat = "anisotropic"',
        )
    )
    assert new.run == old.run and new.run.options["npt"].pressure_GPa == 1.0
    assert new.run.option("langevin").friction_per_fs == 0.05
    flat_off = RunFile.load(
        _run_file(tmp_path, 'integrator = "nve"\ndeform_axis = ""\nrelax_cell = false')
    )
    assert flat_off.run.options == {}
    with pytest.raises(MDInputError, match=r"\[run.nhc\] holds the options of integrator 'nhc'"):
        RunFile.load(_run_file(tmp_path, 'integrator = "langevin"\n[run.nhc]\ntdamp_fs = 50.0'))
    with pytest.raises(
        MDInputError, match="unknown integrator 'verlet'; known: fire, langevin, nhc, nve"
    ):
        build_integrator(RunFile.load(_run_file(tmp_path, 'integrator = "verlet"')).run)
    with pytest.raises(MDInputError, match="needs a thermostat"):
        build_integrator(
            RunFile.load(
                _run_file(tmp_path, 'integrator = "nve"\n[run.npt]\npressure_GPa = 0.0')
            ).run
        )


class StrictComm:
    """Exactly the Comm contract's members over one process, nothing else: an engine call outside the contract is an
    AttributeError."""

    rank, size = 0, 1

    def sendrecv(self, sendobj, dest=0, source=0):
        return sendobj

    def allreduce(self, x, op=None):
        return x

    def allgather(self, x):
        return [x]

    def alltoall(self, objs):
        return list(objs)

    def bcast(self, obj, root=0):
        return obj

    def Barrier(self):
        pass

    def Abort(self, errorcode=1):
        raise SystemExit(errorcode)


@pytest.mark.parametrize("shards", [False, True])
def test_the_engine_makes_only_the_comm_contracts_calls(tmp_path, shards):
    from allegro_fm_md import Comm

    assert isinstance(StrictComm(), Comm)
    extra = "shards = true" if shards else ""
    f = _run_file(tmp_path, 'integrator = "langevin"\n[run.npt]\npressure_GPa = 0.0', steps=60)
    f.write_text(f.read_text().replace("trajectory_every = 0", "trajectory_every = 20\n" + extra))
    sim = run(RunFile.load(f), comm=StrictComm(), progress=False)
    assert sim.state.step == 60
    resumed = (
        f.read_text()
        .replace("steps = 60", "steps = 80")
        .replace(
            'dir = "out"',
            'dir = "out"\nrestart_from = "out/restart.' + ("shards" if shards else "npz") + '"',
        )
    )
    f.write_text(resumed)
    assert run(RunFile.load(f), comm=StrictComm(), progress=False).state.step == 80


def test_one_spelling_of_one_process_and_no_member_probes():
    """No ``comm is None`` branch and no ``hasattr``/``getattr`` probe of a communicator or potential in the engine."""
    offenders = []
    for p in sorted(SRC.rglob("*.py")):
        for k, line in enumerate(p.read_text().splitlines(), 1):
            if (
                "comm is None" in line
                or "comm is not None" in line
                or "hasattr(comm" in line
                or 'getattr(potential, "device_edges"' in line
            ):
                offenders.append(f"{p.name}:{k}")
    assert not offenders, offenders
