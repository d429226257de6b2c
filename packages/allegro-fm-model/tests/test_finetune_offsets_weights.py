"""Fine-tuning onto another level of theory and with per-species weights (issue #36, items 2 and 3).

- ``evaluate.energy_offsets`` (what ``refit_offsets`` adds to the per-species shifts) is the least-squares solution of
  (label - model energy) on the frames' compositions, computed here independently: model energies through the ASE
  calculator, numpy's lstsq. For the shipped model and for a nequip 0.6 file.
- ``refit_offsets`` on a nequip 0.6 file (TorchScript and port engines): the written file's energy is the old one plus
  the offsets of the frame's atoms (its global scale accounted for), forces unchanged; the offsets and the new level
  are recorded in the file.
- ``species_weights``: the force loss of both routes is the per-species weighted mean of squared errors, checked against
  a direct numpy sum; an element the model has no type for is refused by name.
"""

from __future__ import annotations

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest
import tea_align
import torch
from allegro_fm_model import AllegroFMCalculator, load_potential
from allegro_fm_model.evaluate import energy_offsets
from allegro_fm_model.training import TrainSettings, nequip_config, species_weight_list

LEGACY = Path(__file__).parent / "data" / "legacy" / "legacy-allegro-0.3.0.pth"
PLANTED = {"Ca": -3.2, "O": 1.7, "H": -0.45, "C": 0.9}


def _frames(model: str, n: int = 8, seed: int = 2):
    """Calcite / portlandite cells, rattled and resized so that their compositions differ, labelled by ``model`` plus
    the planted per-element offsets and 0.2 meV/atom of noise (a dataset at another level of theory)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    base = ase.io.read(LEGACY.parent / "structures.extxyz", ":2")
    calc = AllegroFMCalculator(load_potential(model))
    rng = np.random.default_rng(seed)
    out, model_e = [], []
    for k in range(n):
        a = base[k % 2].repeat((1 + k % 3, 1, 1)) if k % 4 < 2 else base[k % 2].copy()
        if k >= 4:  # vacancies of one element each (H, O, C), so that every offset is determined
            el = ("O", "C", "H", "O")[k - 4]  # base[0] portlandite (even k), base[1] calcite
            del a[[i for i, s in enumerate(a.get_chemical_symbols()) if s == el][: 1 + k // 6]]
        a.positions += rng.normal(0, 0.05, a.positions.shape)
        a.calc = calc
        e, f = a.get_potential_energy(), a.get_forces()
        model_e.append(e)
        shift = sum(PLANTED[s] for s in a.get_chemical_symbols()) + rng.normal(0, 2e-4) * len(a)
        a.calc = SinglePointCalculator(a, energy=e + shift, forces=f)
        out.append(a)
    return out, np.array(model_e)


def _dataset(tmp_path, frames, level="other-level") -> Path:
    ase.io.write(tmp_path / "d.extxyz", frames)
    tea_align.convert([f"{tmp_path / 'd.extxyz'},level={level},name=d"], tmp_path / "d.h5")
    return tmp_path / "d.h5"


def _lstsq(frames, model_e, elements):
    counts = np.array(
        [[a.get_chemical_symbols().count(el) for el in elements] for a in frames], float
    )
    labels = np.array([a.get_potential_energy() for a in frames])
    return dict(
        zip(elements, np.linalg.lstsq(counts, labels - model_e, rcond=None)[0], strict=True)
    )


@pytest.mark.parametrize("model", ["allegro-fm-mini", str(LEGACY)], ids=["shipped", "nequip-0.6"])
def test_energy_offsets_are_the_least_squares_solution(model, tmp_path):
    frames, model_e = _frames(model)
    ds = _dataset(tmp_path, frames)
    fit = energy_offsets(load_potential(model), str(ds))
    ref = _lstsq(frames, model_e, sorted(fit))
    assert sorted(fit) == ["C", "Ca", "H", "O"]
    for el in fit:  # same solution (float32 model energies through two paths: 1e-4 eV)
        assert fit[el] == pytest.approx(ref[el], abs=1e-4)
        assert fit[el] == pytest.approx(
            PLANTED[el], abs=0.02
        )  # and near the planted offsets (0.2 meV/atom noise)


@pytest.mark.parametrize("engine", ["torchscript", "port"])
def test_refit_offsets_on_a_nequip_06_file(engine, tmp_path):
    """A nequip 0.6 file fine-tuned with refit_offsets onto data at another level: a learning rate of 1e-12 keeps the
    weights, so the written file is the original with its shifts moved: energy + planted offsets, forces unchanged."""
    from allegro_fm_model.legacy_finetune import finetune_legacy

    frames, model_e = _frames(str(LEGACY))
    ds = _dataset(tmp_path, frames)
    s = TrainSettings(
        dataset=str(ds),
        run_dir=str(tmp_path / "run"),
        init_from=str(LEGACY),
        max_epochs=1,
        batch_size=4,
        learning_rate=1e-12,
        val_fraction=0.25,
        test_fraction=0.0,
        refit_offsets=True,
    )
    run = finetune_legacy(s, progress=False, engine=engine)
    old, new = load_potential(str(LEGACY)), load_potential(str(run / "best.pth"))
    assert new.level_of_theory == "other-level"
    extra = {"allegro_fm_finetune": ""}
    torch.jit.load(
        str(run / "best.pth"), _extra_files=extra
    )  # fills ``extra`` with the file's note
    offsets = json.loads(extra["allegro_fm_finetune"])["energy_offsets"]
    assert sorted(offsets) == ["C", "Ca", "H", "O"]
    for el, d in offsets.items():
        assert d == pytest.approx(PLANTED[el], abs=0.02)
    for a in frames[:3]:
        b = a.copy()
        b.calc = AllegroFMCalculator(old)
        e0, f0 = b.get_potential_energy(), b.get_forces()
        b.calc = AllegroFMCalculator(new)
        e1, f1 = b.get_potential_energy(), b.get_forces()
        want = sum(offsets[x] for x in a.get_chemical_symbols())
        assert e1 - e0 == pytest.approx(
            want, abs=2e-3 + 1e-6 * abs(e0)
        )  # float32 shifts, scaled back
        np.testing.assert_allclose(f1, f0, atol=1e-5)


def test_species_weighted_force_loss_both_routes(monkeypatch):
    """SpeciesWeighted (nequip route) and the nequip 0.6 loss weight each atom's squared force error by its species'
    weight: equal to numpy's weighted mean; all weights 1 is the plain mean."""
    import allegro_fm_model.legacy_finetune as lf
    from allegro_fm_model.legacy_finetune import Graph, _loss
    from allegro_fm_model.metrics import SpeciesWeighted
    from nequip.data import AtomicDataDict

    rng = np.random.default_rng(0)
    types = rng.integers(0, 3, 10)
    w = np.array([1.0, 4.0, 0.5])
    pred, ref = rng.normal(size=(10, 3)), rng.normal(size=(10, 3))
    want = float((w[types][:, None] * (pred - ref) ** 2).mean())
    mod = SpeciesWeighted("forces", list(w))
    d1 = {"forces": torch.tensor(pred), AtomicDataDict.ATOM_TYPE_KEY: torch.tensor(types)}
    d2 = {"forces": torch.tensor(ref), AtomicDataDict.ATOM_TYPE_KEY: torch.tensor(types)}
    a, b = mod(d1, d2)
    assert float(((a - b) ** 2).mean()) == pytest.approx(want, rel=1e-12)

    g = Graph(
        np.zeros((10, 3)), np.zeros((2, 0), int), types, np.arange(10), 10, 0.0, ref, None, 0.0
    )
    s = TrainSettings(dataset="x", energy_weight=0.0)
    # a "model" whose forces are ``pred`` whatever the input (energy 0)
    monkeypatch.setattr(lf, "_predict", lambda *_: (torch.tensor(0.0), torch.tensor(pred), None))
    _, parts = _loss(None, g, s, torch.float64, "cpu", w)
    _, parts1 = _loss(None, g, s, torch.float64, "cpu", None)
    assert float(parts["f"]) == pytest.approx(want, rel=1e-12)
    assert float(parts1["f"]) == pytest.approx(float(((pred - ref) ** 2).mean()), rel=1e-12)


def test_species_weights_in_the_config_and_refused_when_unknown(tmp_path):
    frames, _ = _frames("allegro-fm-mini", n=4)
    ds = _dataset(tmp_path, frames, level="x")
    s = TrainSettings(dataset=str(ds), run_dir=str(tmp_path / "r"), species_weights=(("Ca", 4.0),))
    cfg = nequip_config(s)
    loss = cfg["training_module"]["loss"]["metrics"]
    f = next(m for m in loss if m["name"] == "species_weighted_forces_rmse")
    types = cfg["data"]["stats_manager"]["type_names"]
    assert f["field"]["weights"] == [4.0 if t == "Ca" else 1.0 for t in types]
    assert any(
        m["name"] == "forces_rmse" and m["coeff"] is None
        for m in cfg["training_module"]["val_metrics"]["metrics"]
    )
    with pytest.raises(ValueError, match=r"\['Xe'\].*has no type"):
        species_weight_list((("Xe", 2.0),), ["H", "O"], "model.pth")
    with pytest.raises(ValueError, match="species_weights"):
        TrainSettings(dataset="x", species_weights=(("Ca", -1.0),))
    toml = tmp_path / "t.toml"
    toml.write_text(f'[train]\ndataset = "{ds}"\nspecies_weights = {{Ca = 2.5, O = 1}}\n')
    assert TrainSettings.from_toml(toml).species_weights == (("Ca", 2.5), ("O", 1))


def test_per_source_weights_name_a_source_or_a_level(tmp_path):
    """oversample keys name a tea-align source (name=) or a level of theory; a source's count wins over its level's;
    a key no frame has is refused naming it. The nequip route repeats frames, the nequip 0.6 route weights their loss."""
    from allegro_fm_model.training import frame_repeats, frame_sources, oversampled

    frames, _ = _frames("allegro-fm-mini", n=4)
    ase.io.write(tmp_path / "a.extxyz", frames[:2])
    ase.io.write(tmp_path / "b.extxyz", frames[2:])
    tea_align.convert(
        [
            f"{tmp_path / 'a.extxyz'},level=L1,name=mine",
            f"{tmp_path / 'b.extxyz'},level=L1,name=replay-x",
        ],
        tmp_path / "ab.h5",
    )
    keys = frame_sources(tmp_path / "ab.h5")
    assert keys == [("L1", "mine")] * 2 + [("L1", "replay-x")] * 2
    assert frame_repeats(keys, {"replay-x": 3}) == [1, 1, 3, 3]
    assert frame_repeats(keys, {"L1": 2, "mine": 5}) == [5, 5, 2, 2]
    assert oversampled([0, 2], keys, {"replay-x": 3}) == [0, 2, 2, 2]
    with pytest.raises(ValueError, match="no-such"):
        frame_repeats(keys, {"no-such": 2}, "ab.h5")
