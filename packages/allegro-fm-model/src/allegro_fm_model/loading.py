"""Loading models for use: ``load_potential`` takes any model file or shipped name and returns a Potential.

- training checkpoint (``.ckpt``, EMA weights) or nequip package (``.nequip.zip``) -> eager ``AllegroPotential``
- AOTInductor file (``.nequip.pt2``, ``compile_model``) -> ``CompiledAllegroPotential``
- nequip 0.6.x deployed TorchScript (``.pt`` / ``.pth``, e.g. the published ``afm256_01_HL.pt``) -> ``LegacyAllegroPotential``
- a shipped model's name (``allegro-fm-mini``) -> its file in ``models/``

All have the same ``compute`` call (``potential.py``); species and cutoff (Angstrom) come from each file's metadata.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .compiled import CompiledAllegroPotential
from .legacy import LegacyAllegroPotential, is_torchscript_archive
from .model import ensure_nequip_state
from .potential import AllegroPotential


def _graph_model(path: Path):
    ensure_nequip_state()
    logging.getLogger("nequip").setLevel(logging.WARNING)
    name = path.name
    try:
        if name.endswith(".nequip.zip"):
            from nequip.model.saved_models.package import ModelFromPackage  # lazy: nequip imports torch

            models = ModelFromPackage(str(path))
        else:
            from nequip.model.saved_models.checkpoint import ModelFromCheckpoint  # lazy: nequip imports torch

            models = ModelFromCheckpoint(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch.load / zipfile / unpickling errors of a damaged file
        raise ValueError(f"{path}: not a readable Allegro-FM checkpoint or package ({type(exc).__name__}: {exc}); expected a .ckpt, "
                         ".nequip.zip, .nequip.pt2 or a nequip 0.6.x deployed .pt/.pth") from exc
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


def resolve_model(model: str | Path) -> Path:
    """The file of a model argument: a shipped model's name or a path (FileNotFoundError naming it if absent)."""
    if str(model) in BUILTIN_MODELS:
        return builtin_model_path(str(model))
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"{path}: model file not found (nor a shipped model: {', '.join(BUILTIN_MODELS)})")
    return path


#: TorchScript suffixes of nequip 0.6.x deployed models (nequip-deploy build wrote any name; these are the usual ones)
LEGACY_SUFFIXES = (".pt", ".pth")


def load_potential(path: str | Path, device: str = "cpu"):
    """The Potential of a model file or shipped model's name on ``device`` (cpu, cuda[:i], xpu[:i]); see the
    module docstring for the kinds. Species and cutoff (Angstrom) come from the file's metadata; a file of no
    known kind gets a ValueError naming it and what was expected."""
    path = resolve_model(path)
    if path.name.endswith(".nequip.pt2"):
        return CompiledAllegroPotential(path, device)
    if path.suffix in LEGACY_SUFFIXES or is_torchscript_archive(path):  # the reader names what a wrong file lacks
        pot = LegacyAllegroPotential(path, device)
        logging.getLogger("allegro_fm_model").info("%s", pot.describe())
        return pot
    model = _graph_model(path)
    meta = model.metadata
    species = str(meta["type_names"]).split()
    return AllegroPotential(model, species, cutoff=float(meta["r_max"]), device=device)




def compiled_cache_dir() -> Path:
    """Where compiled models are cached: $ALLEGRO_FM_CACHE, else $XDG_CACHE_HOME/allegro-fm/compiled, else
    ~/.cache/allegro-fm/compiled."""
    if os.environ.get("ALLEGRO_FM_CACHE"):
        return Path(os.environ["ALLEGRO_FM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "allegro-fm" / "compiled"


def compiled_on_first_use(model: str | Path, device: str = "cpu", progress: bool = True) -> Path:
    """The AOTInductor file of a packaged model (``.nequip.zip`` or a shipped model's name) for ``device``, compiled the
    first time and then taken from the cache (``compiled_cache_dir``), keyed by the model file's SHA-256, the torch
    version, the device kind and this package's version; concurrent callers (MPI ranks) wait on a file lock for one
    compile. Returns the path of the compiled file."""
    import fcntl
    import hashlib

    import torch  # lazy: torch takes seconds to import; only model paths need it

    from .__about__ import __version__
    from .export import compile_model

    src = resolve_model(model)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:20]
    kind = str(device).split(":")[0]
    out = compiled_cache_dir() / f"{digest}-torch{torch.__version__.replace('+', '_')}-{kind}-afm{__version__}.nequip.pt2"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one compile per cache entry; the others wait and then read it
        if not out.exists():
            if progress:
                print(f"compiling {src.name} for {kind} on first use (AOTInductor, a C++ build: about a minute; cached in "
                      f"{out.parent}; [potential.options] compile = false runs it eager) ...", flush=True)
            compile_model(src, out, device)
    return out


def md_potential(spec, symbols, device: str):
    """allegro-fm-md's ``[potential] kind = "allegro"`` (entry point ``allegro_fm_md.potentials``): the potential of
    the run file's ``model`` (any file ``load_potential`` reads, or a shipped model's name) on ``device``.

    ``[potential.options] compile`` (default true; false or the environment ALLEGRO_FM_COMPILE=0 opt out): a packaged
    model (``.nequip.zip`` or a shipped name) on the CPU or CUDA is AOTInductor-compiled on first use and cached
    (``compiled_on_first_use``); it runs about 2x faster than eager here. Checkpoints, compiled and legacy files load
    as they are."""
    if not spec.model:
        raise ValueError("[potential] kind = 'allegro' needs model = <a .ckpt, .nequip.zip, .nequip.pt2, nequip 0.6.x .pt "
                         "file or a shipped model's name>")
    options = dict(getattr(spec, "options", {}) or {})
    unknown = set(options) - {"compile"}
    if unknown:
        raise ValueError(f"[potential.options] for kind 'allegro': unknown keys {sorted(unknown)}; known: compile")
    want = options.get("compile", True)
    if not isinstance(want, bool):
        raise ValueError(f"[potential.options] compile must be true or false, not {want!r}")
    packaged = str(spec.model) in BUILTIN_MODELS or str(spec.model).endswith(".nequip.zip")
    if want and packaged and os.environ.get("ALLEGRO_FM_COMPILE", "1") != "0" and str(device).split(":")[0] in ("cpu", "cuda"):
        return load_potential(compiled_on_first_use(spec.model, device), device)
    return load_potential(spec.model, device)
