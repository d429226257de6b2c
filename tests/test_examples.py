"""The examples run as written, on tiny sizes (examples/*/: fuse two datasets and train, fine-tune a nequip 0.6 file,
a slab with water opened in OVITO and MDAnalysis)."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _main(name: str):
    return runpy.run_path(str(next((ROOT / "examples").glob(f"*/{name}.py"))))["main"]


def test_fuse_two_datasets_and_train(tmp_path):
    """The alignment recovers the synthetic levels' exact scale, and the trained model's file evaluates on the data."""
    from tea_align import synthetic

    r = _main("fuse_and_train")(["-o", str(tmp_path), "--frames", "8", "--epochs", "2"])
    ls = r["alignment"].levels[synthetic.LEVEL_S]
    assert ls.scale == pytest.approx(synthetic.ALPHA, rel=1e-6)
    assert ls.anchor_rmse_aligned < 1e-3 * ls.anchor_rmse_raw
    assert r["model"].is_file() and r["errors"].frames > 0
    assert set(r["errors"].forces) >= {"all", "periodic", "molecules"}


def test_finetune_a_nequip_06_file(tmp_path):
    """Fine-tuning lowers the force error on the new frames (3 epochs) and writes a file in the original format."""
    before, after = _main("finetune_legacy")(
        ["-o", str(tmp_path), "--frames", "8", "--epochs", "3"]
    )
    assert after < before
    assert (tmp_path / "run" / "last.pth").read_bytes()[
        :2
    ] == b"PK"  # a TorchScript archive, as the original


def test_slab_with_water_opens_in_ovito_and_mdanalysis(tmp_path):
    r = _main("slab_water")(["-o", str(tmp_path), "--steps", "10", "--eager"])
    assert r.get("mdanalysis_frames", 11) == 11
    if "ovito_frames" in r:
        assert (
            r["ovito_frames"] == 11 and min(r["water_O_above_slab"]) >= 24
        )  # the 24 waters stay above the slab
