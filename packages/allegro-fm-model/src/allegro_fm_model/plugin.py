"""allegro-fm-md's ``[potential] kind = "allegro"`` (entry point ``allegro_fm_md.potentials``): a model file or shipped
model on a device, compiled on first use and cached. Apart from ``loading`` so that loading and export do not import
each other."""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path

from .__about__ import __version__
from .export import compile_model
from .heads import load_heads_potential
from .legacy import LegacyModelError
from .loading import (
    BUILTIN_MODELS,
    builtin_heads_path,
    is_legacy_model,
    load_committee,
    load_potential,
    resolve_model,
)

log = logging.getLogger("allegro_fm_model")


def compiled_cache_dir() -> Path:
    """Where compiled models are cached: $ALLEGRO_FM_CACHE, else $XDG_CACHE_HOME/allegro-fm/compiled, else
    ~/.cache/allegro-fm/compiled."""
    if os.environ.get("ALLEGRO_FM_CACHE"):
        return Path(os.environ["ALLEGRO_FM_CACHE"])
    return (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "allegro-fm" / "compiled"
    )


def compiled_on_first_use(model: str | Path, device: str = "cpu", progress: bool = True) -> Path:
    """The AOTInductor file of a packaged model (``.nequip.zip``, a shipped model's name or a nequip 0.6.x deployed file,
    through its port) for ``device``, compiled the
    first time and then taken from the cache (``compiled_cache_dir``), keyed by the model file's SHA-256, the torch
    version, the device kind and this package's version; concurrent callers (MPI ranks) wait on a file lock for one
    compile. Returns the path of the compiled file."""
    import torch  # lazy: torch takes seconds to import; only model paths need it

    src = resolve_model(model)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:20]
    kind = str(device).split(":")[0]
    port = ""
    if is_legacy_model(src):
        from .legacy_port import PORT_REVISION  # lazy: the port module imports torch

        port = f"-port{PORT_REVISION}"
    out = (
        compiled_cache_dir()
        / f"{digest}-torch{torch.__version__.replace('+', '_')}-{kind}-afm{__version__}{port}.nequip.pt2"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".lock"), "w") as lock:
        fcntl.flock(
            lock, fcntl.LOCK_EX
        )  # one compile per cache entry; the others wait and then read it
        if not out.exists():
            if progress:
                print(
                    f"compiling {src.name} for {kind} on first use (AOTInductor, a C++ build: about a minute; cached in "
                    f"{out.parent}; [potential.options] compile = false runs it eager) ...",
                    flush=True,
                )
            compile_model(src, out, device)
    return out


def md_potential(spec, symbols, device: str):
    """allegro-fm-md's ``[potential] kind = "allegro"`` (entry point ``allegro_fm_md.potentials``): the potential of
    the run file's ``model`` (any file ``load_potential`` reads, or a shipped model's name) on ``device``, or with
    ``models = [...]`` (and optional ``weights``) a committee of them (``load_committee``: the weighted mean, and the
    per-atom force deviation in thermo.log and the guards).

    ``[potential.options] heads``: true (the heads shipped beside a shipped model) or a heads file: the model's
    shallow ensemble (``heads.py``, eager), a committee at a fraction of K models' cost.

    ``[potential.options] compile`` (default true; false or the environment ALLEGRO_FM_COMPILE=0 opt out): a packaged
    model (``.nequip.zip`` or a shipped name) or a nequip 0.6.x deployed file (the published ``afm256_01_HL.pt``,
    through ``legacy_port``) on the CPU or CUDA is AOTInductor-compiled on first use and cached
    (``compiled_on_first_use``); it runs about 2x faster than eager or TorchScript here. A nequip 0.6 file whose
    options the port does not implement runs as TorchScript (logged). Checkpoints and compiled files load as they
    are."""
    models = list(getattr(spec, "models", None) or [])
    if spec.model and models:
        raise ValueError("[potential]: give model = <one file> or models = [<files>], not both")
    if not spec.model and not models:
        raise ValueError(
            "[potential] kind = 'allegro' needs model = <a .ckpt, .nequip.zip, .nequip.pt2, nequip 0.6.x .pt "
            "file or a shipped model's name> (or models = [...] for a committee)"
        )
    options = dict(getattr(spec, "options", {}) or {})
    unknown = set(options) - {"compile", "heads"}
    if unknown:
        raise ValueError(
            f"[potential.options] for kind 'allegro': unknown keys {sorted(unknown)}; known: compile, heads"
        )
    want = options.get("compile", True)
    if not isinstance(want, bool):
        raise ValueError(f"[potential.options] compile must be true or false, not {want!r}")

    def compiles(
        model, dev
    ) -> bool:  # a packaged or nequip 0.6 model on the CPU or CUDA, compilation not turned off
        packaged = (
            str(model) in BUILTIN_MODELS
            or str(model).endswith(".nequip.zip")
            or is_legacy_model(model)
        )
        return (
            want
            and packaged
            and os.environ.get("ALLEGRO_FM_COMPILE", "1") != "0"
            and str(dev).split(":")[0] in ("cpu", "cuda")
        )

    heads = options.get("heads", False)
    if (
        heads is not False
    ):  # a shallow ensemble: the eager model with its heads (compiled files hide the features)
        if models:
            raise ValueError("[potential.options] heads is for one model (model = ...), not models")
        if heads is True:
            heads = builtin_heads_path(str(spec.model))
        if not isinstance(heads, (str, Path)) or not str(heads):
            raise ValueError(
                "[potential.options] heads must be true (the shipped heads) or a heads file"
            )
        # the steps without heads run the compiled file, as the single model would
        fast = _cached_compiled(spec.model, device) if compiles(spec.model, device) else None
        return load_heads_potential(spec.model, heads, device, fast)

    def one(model, dev):
        if not compiles(model, dev):
            return load_potential(model, dev)
        try:
            return _cached_compiled(model, dev)
        except (
            LegacyModelError
        ) as exc:  # the port refuses an option: the TorchScript original runs it exactly
            log.warning("%s; running it as TorchScript", exc)
            return load_potential(model, dev)

    if models:
        return load_committee(
            models, list(getattr(spec, "weights", None) or []) or None, device, one
        )
    return one(spec.model, device)


def _cached_compiled(model, device: str):
    """The compiled potential from the cache; an entry that does not load (a compile killed half way, a damaged file)
    is rebuilt once, and if the rebuilt one fails too the error names the cache file."""
    path = compiled_on_first_use(model, device)
    seen = path.stat().st_mtime_ns
    try:
        return load_potential(path, device)
    except (ValueError, RuntimeError, OSError) as exc:
        log.warning(
            "%s: the cached compiled model does not load (%s); compiling it again", path, exc
        )
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if path.exists() and path.stat().st_mtime_ns == seen:  # not yet rebuilt by another rank
                path.unlink()
        path = compiled_on_first_use(model, device)
        try:
            return load_potential(path, device)
        except (ValueError, RuntimeError, OSError) as again:
            raise ValueError(
                f"{path}: the compiled model cache entry does not load even after recompiling ({again}); "
                "remove it, or run with [potential.options] compile = false"
            ) from again
