"""Loading models for use: ``load_potential`` takes any model file or shipped name and returns a Potential.

- training checkpoint (``.ckpt``, EMA weights) or nequip package (``.nequip.zip``) -> eager ``AllegroPotential``
- AOTInductor file (``.nequip.pt2``, ``compile_model``) -> ``CompiledAllegroPotential``
- nequip 0.6.x deployed TorchScript (``.pt`` / ``.pth``, e.g. the published ``afm256_01_HL.pt``) -> ``LegacyAllegroPotential``
- a shipped model's name (``allegro-fm-mini``) -> its file in ``models/``

All have the same ``compute`` call (``potential.py``); species, cutoff (Angstrom) and ``level_of_theory`` (the energies'
level, ``provenance.py``) come from each file's metadata.
"""

from __future__ import annotations

import logging
from pathlib import Path

from .committee import CommitteePotential
from .compiled import CompiledAllegroPotential
from .legacy import LegacyAllegroPotential, is_torchscript_archive
from .model import ensure_nequip_state
from .potential import AllegroPotential
from .provenance import model_level


def _graph_model(path: Path):
    ensure_nequip_state()
    logging.getLogger("nequip").setLevel(logging.WARNING)
    name = path.name
    try:
        if name.endswith(".nequip.zip"):
            from nequip.model.saved_models.package import (
                ModelFromPackage,
            )  # lazy: nequip imports torch

            models = ModelFromPackage(str(path))
        else:
            from nequip.model.saved_models.checkpoint import (
                ModelFromCheckpoint,
            )  # lazy: nequip imports torch

            models = ModelFromCheckpoint(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch.load / zipfile / unpickling errors of a damaged file
        raise ValueError(
            f"{path}: not a readable Allegro-FM checkpoint or package ({type(exc).__name__}: {exc}); expected a .ckpt, "
            ".nequip.zip, .nequip.pt2 or a nequip 0.6.x deployed .pt/.pth"
        ) from exc
    if "sole_model" not in models:
        raise ValueError(f"{path}: holds several models ({list(models)}); pass one")
    return models["sole_model"]


#: Models shipped inside this package (name -> file under allegro_fm_model/models/).
BUILTIN_MODELS = {"allegro-fm-mini": "allegro-fm-mini.nequip.zip"}


def builtin_model_path(name: str = "allegro-fm-mini") -> Path:
    """Path of a model shipped with the package (see models/MODEL_CARD.md for what it is and is not)."""
    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown built-in model {name!r}; shipped: {', '.join(BUILTIN_MODELS)}")
    p = Path(__file__).parent / "models" / BUILTIN_MODELS[name]
    if not p.exists():
        raise FileNotFoundError(f"{p}: the built-in model file is missing from this installation")
    return p


def builtin_heads_path(name: str = "allegro-fm-mini") -> Path:
    """The shallow-ensemble heads shipped beside a built-in model (``heads.py``; FileNotFoundError when none)."""
    p = heads_beside(name) if name in BUILTIN_MODELS else None
    if p is None:
        raise FileNotFoundError(f"no shallow-ensemble heads are shipped for {name}")
    return p


def heads_beside(model: str | Path) -> Path | None:
    """The shallow-ensemble heads file that goes with ``model`` (a shipped name or a model file), or None: for a
    shipped model the one shipped beside it, for NAME.nequip.zip / NAME.ckpt the file NAME.heads.npz next to it."""
    if str(model) in BUILTIN_MODELS:
        p = builtin_model_path(str(model)).with_name(f"{model}.heads.npz")
    else:
        path = Path(model)
        p = path.with_name(path.name.split(".")[0] + ".heads.npz")
    return p if p.exists() else None


def resolve_model(model: str | Path) -> Path:
    """The file of a model argument: a shipped model's name or a path (FileNotFoundError naming it if absent)."""
    if str(model) in BUILTIN_MODELS:
        return builtin_model_path(str(model))
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: model file not found (nor a shipped model: {', '.join(BUILTIN_MODELS)})"
        )
    return path


def _xpu_ready() -> None:
    """Native torch.xpu (torch >= 2.4) is used as it is; an older torch gets it from intel-extension-for-pytorch, imported
    only then (IPEX is retired upstream; allegro-fm-md's potentials.accelerator_backend makes the same choice)."""
    import torch  # lazy: torch takes seconds to import

    if not hasattr(getattr(torch, "xpu", None), "device_count"):
        import intel_extension_for_pytorch  # noqa: F401  (registers torch.xpu; ImportError names the package)


#: TorchScript suffixes of nequip 0.6.x deployed models (nequip-deploy build wrote any name; these are the usual ones)
LEGACY_SUFFIXES = (".pt", ".pth")


def is_legacy_model(model: str | Path) -> bool:
    """True when ``model`` (a path or shipped name) is a nequip 0.6.x deployed TorchScript file (by suffix or content)."""
    if str(model) in BUILTIN_MODELS:
        return False
    path = Path(model)
    return path.suffix in LEGACY_SUFFIXES or (path.is_file() and is_torchscript_archive(path))


def load_potential(path: str | Path, device: str = "cpu"):
    """The Potential of a model file or shipped model's name on ``device`` (cpu, cuda[:i], xpu[:i]); see the
    module docstring for the kinds. Species and cutoff (Angstrom) come from the file's metadata; a file of no
    known kind gets a ValueError naming it and what was expected."""
    path = resolve_model(path)
    if str(device).startswith("xpu"):
        _xpu_ready()
    if path.name.endswith(".nequip.pt2"):
        pot = CompiledAllegroPotential(path, device)
    elif path.suffix in LEGACY_SUFFIXES or is_torchscript_archive(
        path
    ):  # the reader names what a wrong file lacks
        pot = LegacyAllegroPotential(path, device)
        logging.getLogger("allegro_fm_model").info("%s", pot.describe())
    else:
        model = _graph_model(path)
        meta = model.metadata
        species = str(meta["type_names"]).split()
        pot = AllegroPotential(model, species, cutoff=float(meta["r_max"]), device=device)
        pot.level_of_theory = model_level(path)
    pot.source = (
        path.resolve()
    )  # the file it came from (the ASE calculator pickles it as this path)
    return pot


def load_committee(models, weights=None, device: str = "cpu", loader=None) -> CommitteePotential:
    """A ``CommitteePotential`` of several model files or shipped names (any mix ``load_potential`` reads) on
    ``device``; ``weights`` default equal. ``loader(model, device)`` loads one member (default ``load_potential``; the
    MD plug-in passes its compile-on-first-use loader). Logs what the committee covers (elements, cutoff)."""
    loader = loader or load_potential
    models = [str(m) for m in models]
    com = CommitteePotential([loader(m, device) for m in models], weights, names=models)
    com.sources = tuple(models)  # the ASE calculator pickles a committee as its members' files
    logging.getLogger("allegro_fm_model").info("%s", com.describe())
    return com
