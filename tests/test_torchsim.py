"""TorchSim runs our model files through allegro_fm_model.torchsim.AllegroFMModel: TorchSim's own interface check,
equality with allegro-fm-md's force evaluation on the same structures (shipped model and a nequip 0.6 file), and a
batch of 8 small systems integrated by TorchSim."""

from __future__ import annotations

from pathlib import Path

import ase.io
import numpy as np
import pytest

ts = pytest.importorskip("torch_sim")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
T11 = ROOT / "examples" / "tobermorite-11a" / "tobermorite-11A.extxyz"
LEGACY = ROOT / "packages/allegro-fm-model/tests/data/legacy/legacy-allegro-0.3.0.pth"


def test_torchsims_own_interface_check_passes_on_a_float64_model():
    """torch_sim.models.interface.validate_model_outputs: shapes, dtypes, no mutation of the state, one batch of two
    systems equal to each alone (it builds Si and Fe cells)."""
    from allegro_fm_model import build_model, tiny_preset
    from allegro_fm_model.potential import AllegroPotential
    from allegro_fm_model.torchsim import AllegroFMModel
    from torch_sim.models.interface import validate_model_outputs

    species = ("Si", "Fe")
    pot = AllegroPotential(
        build_model(tiny_preset(), species, dtype="float64", seed=1), species, cutoff=4.0
    )
    validate_model_outputs(AllegroFMModel(pot), torch.device("cpu"), torch.float64)


def _float64_model():
    """A tiny float64 Allegro model of the shipped model's elements, weights perturbed away from initialisation."""
    from allegro_fm_model import build_model, tiny_preset
    from allegro_fm_model.potential import AllegroPotential

    species = ("H", "C", "O", "Si", "Ca")
    torch.manual_seed(0)
    model = build_model(tiny_preset(), species, dtype="float64", seed=2)
    with torch.no_grad():
        for prm in model.parameters():
            prm.add_(0.1 * torch.randn_like(prm))
    return AllegroPotential(model, species, cutoff=5.2)


@pytest.mark.parametrize(
    "model,tol",
    [("float64", 1e-9), ("allegro-fm-mini", 5e-5), (str(LEGACY), 5e-5)],
    ids=["float64", "shipped", "nequip-0.6"],
)
def test_torchsim_equals_allegro_fm_md_on_the_same_structures(model, tol):
    """Energy, forces and stress of two periodic systems in one TorchSim batch against allegro-fm-md's one-rank
    force evaluation (EngineCalculator: its Verlet lists and ghost atoms, not the calculator's edge shifts). A float64
    model agrees to 1e-9 eV/A; the float32 files to their round-off (1.6e-5 eV/A measured on forces near 1 eV/A: a
    ghost atom's float32 position is rounded where an edge shift is not)."""
    from allegro_fm_md import EngineCalculator
    from allegro_fm_model import load_potential
    from allegro_fm_model.torchsim import AllegroFMModel

    pot = _float64_model() if model == "float64" else load_potential(model)
    t11 = ase.io.read(T11)
    t11.rattle(0.02, seed=3)
    no_ca = t11[[i for i, s in enumerate(t11.get_chemical_symbols()) if s != "Ca"]]
    systems = [t11, no_ca]
    m = AllegroFMModel(pot)
    out = m(ts.initialize_state(systems, m.device, m.dtype))
    counts = np.cumsum([0] + [len(a) for a in systems])
    for k, a in enumerate(systems):
        ref = a.copy()
        ref.calc = EngineCalculator(pot)
        assert out["energy"][k].item() == pytest.approx(
            ref.get_potential_energy(), abs=tol * len(a)
        )
        np.testing.assert_allclose(
            out["forces"][counts[k] : counts[k + 1]].numpy(), ref.get_forces(), atol=tol
        )
        np.testing.assert_allclose(
            out["stress"][k].numpy(), ref.get_stress(voigt=False), atol=tol / 100
        )


def test_a_batch_of_eight_small_systems_runs_in_torchsim(capsys):
    """The batched example (examples/torchsim/batch_md.py, 10 steps): 8 small cells integrated together by TorchSim's
    NVT Langevin; each final energy equals the model on that system alone, and the cells stay cells (silicon and
    lime energies per atom near the model's own at rest)."""
    import runpy

    from allegro_fm_model.torchsim import AllegroFMModel
    from ase.build import bulk

    example = runpy.run_path(str(ROOT / "examples" / "torchsim" / "batch_md.py"))
    per_atom = example["main"](["--steps", "10"])
    assert len(per_atom) == 8 and "system 7: Ca4O4, 8 atoms" in capsys.readouterr().out
    m = AllegroFMModel("allegro-fm-mini")
    for k, cell in enumerate(
        [bulk("Si", "diamond", a=5.43, cubic=True), bulk("CaO", "rocksalt", a=4.81, cubic=True)]
    ):
        rest = m(ts.initialize_state([cell], m.device, m.dtype))["energy"][0].item() / len(cell)
        assert all(
            abs(e - rest) < 0.1 for e in per_atom[k::2]
        )  # eV/atom: 300 K of motion, no melting
        assert len({round(e, 8) for e in per_atom[k::2]}) == 4  # different seeds, different states


def test_an_element_the_model_does_not_know_is_named_with_its_atom():
    from allegro_fm_model.torchsim import AllegroFMModel
    from ase.build import bulk

    m = AllegroFMModel("allegro-fm-mini")
    state = ts.initialize_state(
        [bulk("Si", "diamond", a=5.43), bulk("Fe", "bcc", a=2.87)], m.device, m.dtype
    )
    with pytest.raises(
        ValueError, match=r"atom 2 \(system 1\): element Z=26 is not known to this model"
    ):
        m(state)
