"""The nequip dataset reads tea-align files directly and feeds an Allegro-FM model."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import tea_align
from allegro_fm_model.data import TeaAlignDataset, reference_energies


def test_dataset_frames_match_tea_align(aligned_small):
    from nequip.data import AtomicDataDict as K

    ds = TeaAlignDataset(aligned_small, ["H", "C", "O", "Si", "Ca"])
    assert len(ds) == 12
    with tea_align.open_dataset(aligned_small) as t:
        for i in (0, 7, 11):
            f, d = t[i], ds[i]
            np.testing.assert_allclose(d[K.POSITIONS_KEY].numpy(), f.positions)
            assert float(d[K.TOTAL_ENERGY_KEY]) == pytest.approx(f.energy)
            np.testing.assert_allclose(d[K.FORCE_KEY].numpy(), f.forces)
            assert [ds.type_names[t] for t in d[K.ATOM_TYPE_KEY]] == f.symbols
    # the per-element energies the model starts from are the least-squares fit of the file's aligned energies per atom
    # on its composition fractions (eV/atom): numpy's lstsq on the frames as read here
    ref = reference_energies(aligned_small)
    syms = ["H", "C", "O", "Si", "Ca"]
    assert set(ref) == set(syms)
    with tea_align.open_dataset(aligned_small) as t:
        frames = list(t)
    x = np.array([[f.symbols.count(e) / f.n_atoms for e in syms] for f in frames])
    w = np.linalg.lstsq(x, np.array([f.energy / f.n_atoms for f in frames]), rcond=None)[0]
    np.testing.assert_allclose([ref[e] for e in syms], w, rtol=1e-8, atol=1e-8)


def test_dataset_batches_run_through_a_model(aligned_small):
    import torch
    from allegro_fm_model import build_model, tiny_preset
    from nequip.data import AtomicDataDict as K
    from nequip.data.transforms import NeighborListTransform

    ds = TeaAlignDataset(
        aligned_small, ["H", "C", "O", "Si", "Ca"], transforms=[NeighborListTransform(r_max=5.2)]
    )
    batch = K.batched_from_list([ds[i] for i in range(4)])
    model = build_model(
        tiny_preset(),
        ["H", "C", "O", "Si", "Ca"],
        per_type_energy_shifts=reference_energies(aligned_small),
        dtype="float64",
    )
    out = model(batch)
    assert out[K.TOTAL_ENERGY_KEY].shape == (4, 1) and torch.isfinite(out[K.FORCE_KEY]).all()
    # a batch is the frames side by side: each frame's energy and forces equal the model's on that frame alone; the
    # dataset's positions are torch's default float32, so forces agree to float32 round-off (the energy sums in float64)
    counts = [len(ds[i][K.POSITIONS_KEY]) for i in range(4)]
    forces = torch.split(out[K.FORCE_KEY].detach(), counts)
    for i in range(4):
        alone = model(K.batched_from_list([ds[i]]))
        assert float(out[K.TOTAL_ENERGY_KEY][i]) == pytest.approx(
            float(alone[K.TOTAL_ENERGY_KEY][0]), rel=1e-11
        )  # ~36 keV totals
        torch.testing.assert_close(forces[i], alone[K.FORCE_KEY].detach(), rtol=1e-5, atol=1e-6)


def test_unknown_element_and_bad_schema(aligned_small, tmp_path):
    ds = TeaAlignDataset(aligned_small, ["H", "C", "O"])
    with pytest.raises(
        tea_align.TeaAlignError, match="element (Si|Ca) is not among the model's 3 types"
    ):
        for i in range(len(ds)):
            ds[i]
    import shutil

    shutil.copy(aligned_small, tmp_path / "v9.h5")
    with h5py.File(tmp_path / "v9.h5", "a") as h5:
        h5.attrs["schema_version"] = 9
    with pytest.raises(tea_align.TeaAlignError, match="schema version 9"):
        TeaAlignDataset(tmp_path / "v9.h5", ["H"])


def test_in_memory_cache_gives_the_frames_of_the_file(aligned_small):
    """The in-memory copy (small files) returns the same frames as per-frame reads, for a subset too, and
    hands out copies: flagging a returned tensor for grad leaves the cached one untouched."""
    from nequip.data import AtomicDataDict as K

    sub = [11, 3, 5]
    cached = TeaAlignDataset(aligned_small, ["H", "C", "O", "Si", "Ca"], indices=sub)
    direct = TeaAlignDataset(aligned_small, ["H", "C", "O", "Si", "Ca"], indices=sub, cache=False)
    assert cached.cache and not direct.cache
    for i in range(len(sub)):
        a, b = cached[i], direct[i]
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k].numpy(), b[k].numpy())
    first = cached[0]
    first[K.POSITIONS_KEY].requires_grad_(True)
    first[K.POSITIONS_KEY].data.add_(1.0)
    np.testing.assert_array_equal(
        cached[0][K.POSITIONS_KEY].numpy(), direct[0][K.POSITIONS_KEY].numpy()
    )
    assert not cached[0][K.POSITIONS_KEY].requires_grad
