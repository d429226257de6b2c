"""The level of theory of a model's energies, recorded in every model file this package writes and checked against data.

A model predicts total energies on one energy scale: the tea-align target level of the data it was trained on
(``target_level`` of an aligned dataset, schema v1). Evaluating or fine-tuning it on data aligned onto another level
compares energies that differ by the two levels' per-element offsets (hundreds of eV per atom between an all-electron
and a PAW level), so ``check_levels`` refuses that, naming both levels, unless the caller realigns the data (tea-align)
or refits the per-species offsets. Where the level is recorded, by file kind:

- training checkpoint (``.ckpt``): the key ``LEVEL_KEY`` of the Lightning checkpoint dict (``callbacks.LevelOfTheory``)
- nequip package (``.nequip.zip``): the record ``<archive>/allegro_fm/level_of_theory.txt`` (``write_zip_level``)
- AOTInductor file (``.nequip.pt2``): the metadata key ``LEVEL_KEY``
- nequip 0.6.x TorchScript (``.pt``): the extra file ``LEVEL_KEY`` (written by fine-tuning here; absent in the published files)

A file without the record has level ``UNKNOWN_LEVEL``: the check is then skipped with a warning.
"""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import tea_align

log = logging.getLogger("allegro_fm_model")

#: key of the level of theory in a checkpoint dict, an AOTInductor metadata table and a TorchScript extra file
LEVEL_KEY = "allegro_fm_level_of_theory"
#: the record of a ``.nequip.zip`` package that holds the level (under the archive's top folder)
ZIP_RECORD = "allegro_fm/level_of_theory.txt"
#: the level of a model file that does not record one
UNKNOWN_LEVEL = "unknown"


class LevelMismatchError(ValueError):
    """Model and data are on different levels of theory (the message names both and the two ways out)."""


def dataset_level(path: str | Path) -> str:
    """The level of theory of an aligned dataset's energies: its ``target_level``; for an unaligned file whose sources
    all share one level, that level; otherwise ``UNKNOWN_LEVEL``."""
    with tea_align.open_dataset(path) as ds:
        return level_of(ds)


def level_of(ds) -> str:
    """``dataset_level`` of an open ``tea_align.AlignedDataset``."""
    if ds.target_level:
        return ds.target_level
    levels = {s.level_of_theory for s in ds.sources if s.level_of_theory}
    return levels.pop() if len(levels) == 1 else UNKNOWN_LEVEL


def write_zip_level(path: str | Path, level: str) -> None:
    """Record ``level`` in a ``.nequip.zip`` package in place (a stored zip record; torch.package ignores it)."""
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_STORED) as zf:
        prefix = zf.namelist()[0].split("/", 1)[0]
        name = f"{prefix}/{ZIP_RECORD}"
        if name in zf.namelist():
            raise ValueError(f"{path}: already records a level of theory")
        zf.writestr(name, level or UNKNOWN_LEVEL)


def _zip_level(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        hit = [n for n in zf.namelist() if n.endswith("/" + ZIP_RECORD)]
        return zf.read(hit[0]).decode("utf-8").strip() if hit else UNKNOWN_LEVEL


def _checkpoint_level(path: Path) -> str:
    import torch  # lazy: torch takes seconds to import; only checkpoint paths need it

    ckpt = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    return str(ckpt.get(LEVEL_KEY) or UNKNOWN_LEVEL) if isinstance(ckpt, dict) else UNKNOWN_LEVEL


def model_level(path: str | Path) -> str:
    """The level of theory a model file records (``UNKNOWN_LEVEL`` when it records none); see the module docstring."""
    path = Path(path)
    name = path.name
    if name.endswith(".nequip.zip"):
        return _zip_level(path)
    if name.endswith(".ckpt"):
        return _checkpoint_level(path)
    if name.endswith(".nequip.pt2"):
        from nequip.model.inference_models.compiled import (
            load_compiled_model,
        )  # lazy: nequip imports torch

        return str(load_compiled_model(str(path), "cpu")[1].get(LEVEL_KEY) or UNKNOWN_LEVEL)
    with zipfile.ZipFile(path) as zf:  # TorchScript: an extra file
        hit = [n for n in zf.namelist() if n.endswith("/extra/" + LEVEL_KEY)]
        return zf.read(hit[0]).decode("utf-8").strip() if hit else UNKNOWN_LEVEL


def check_levels(
    model_lv: str, data_lv: str, model: str, data: str, *, refit: bool = False
) -> None:
    """LevelMismatchError unless the model's level ``model_lv`` equals the data's ``data_lv`` (or one is unknown, which
    is logged, or ``refit`` says per-species offsets will be refitted). ``model``/``data`` name the files."""
    if UNKNOWN_LEVEL in (model_lv, data_lv) or not model_lv or not data_lv:
        log.info(
            "level of theory: model %s is at %r, data %s at %r; not checked",
            model,
            model_lv or UNKNOWN_LEVEL,
            data,
            data_lv or UNKNOWN_LEVEL,
        )
        return
    if model_lv == data_lv:
        return
    if refit:
        log.warning(
            "level of theory: model %s is at %r, data %s at %r; per-species energy offsets refitted",
            model,
            model_lv,
            data,
            data_lv,
        )
        return
    raise LevelMismatchError(
        f"{data}: energies at level of theory {data_lv!r}, but model {model} predicts energies at {model_lv!r}; realign the "
        f"data onto the model's level (tea-align fit/apply --target {model_lv!r}) or refit per-species energy offsets "
        "(--refit-offsets)"
    )
