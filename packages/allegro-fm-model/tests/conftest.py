from __future__ import annotations

import pytest
import tea_align
from tea_align import synthetic


def make_aligned(folder, n: int, seed: int):
    """A small aligned dataset (synthetic two-level data fused by tea-align) in ``folder``."""
    p = synthetic.make_demo_data(
        folder, n_crystals=n, n_molecules=n, n_anchors=min(n, 8), seed=seed
    )
    data = [
        f"{p['periodic']},level={synthetic.LEVEL_S}",
        f"{p['molecules']},level={synthetic.LEVEL_T}",
    ]
    al = tea_align.fit([p["anchors"]], data, target_level=synthetic.LEVEL_T)
    tea_align.apply(al, data, folder / "aligned.h5")
    return folder / "aligned.h5"


@pytest.fixture(scope="module")
def aligned_small(tmp_path_factory):
    return make_aligned(tmp_path_factory.mktemp("aligned"), 6, 2)


@pytest.fixture(scope="module")
def aligned_train(tmp_path_factory):
    return make_aligned(tmp_path_factory.mktemp("train"), 12, 4)
