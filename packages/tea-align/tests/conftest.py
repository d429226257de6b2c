from __future__ import annotations

import numpy as np
import pytest
from tea_align import synthetic


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory):
    """Synthetic two-level fusion problem with known alignment (files + the truth)."""
    out = tmp_path_factory.mktemp("demo")
    paths = synthetic.make_demo_data(out, n_crystals=18, n_molecules=16, n_anchors=10, seed=1)
    return paths, synthetic.Truth()


@pytest.fixture
def rng():
    return np.random.default_rng(7)
