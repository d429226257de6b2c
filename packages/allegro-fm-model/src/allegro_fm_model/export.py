"""Loading trained models for use: ``load_potential`` (checkpoint or nequip package -> AllegroPotential).

Compiled deployment files (nequip-compile: TorchScript / AOTInductor) and the LAMMPS ML-IAP file are
not wired in yet (issue #3); checkpoints and ``.nequip.zip`` packages run eagerly on any torch device.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .potential import AllegroPotential


def _graph_model(path: Path):
    from .model import ensure_nequip_state

    ensure_nequip_state()
    logging.getLogger("nequip").setLevel(logging.WARNING)
    name = path.name
    try:
        if name.endswith(".nequip.zip"):
            from nequip.model.saved_models.package import ModelFromPackage

            models = ModelFromPackage(str(path))
        else:
            from nequip.model.saved_models.checkpoint import ModelFromCheckpoint

            models = ModelFromCheckpoint(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch.load / zipfile / unpickling errors of a damaged file
        raise ValueError(f"{path}: not a readable Allegro-FM checkpoint or package ({type(exc).__name__}: {exc})") from exc
    if "sole_model" not in models:
        raise ValueError(f"{path}: holds several models ({list(models)}); pass one")
    return models["sole_model"]


def load_potential(path: str | Path, device: str = "cpu") -> AllegroPotential:
    """An AllegroPotential from a training checkpoint (.ckpt, the EMA weights) or a nequip package (.nequip.zip).

    The species and cutoff (Angstrom) come from the model's metadata.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found")
    model = _graph_model(path)
    meta = model.metadata
    species = str(meta["type_names"]).split()
    return AllegroPotential(model, species, cutoff=float(meta["r_max"]), device=device)
