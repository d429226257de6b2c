"""Potential kinds of the run file's ``[potential] kind = ...``: name -> factory(spec, symbols, device) -> Potential.

Built in: ``lj`` and ``morse`` (reference.py). Other packages add kinds through the entry-point group
``allegro_fm_md.potentials`` (allegro-fm-model registers ``allegro``: the engine itself never imports a model
package); a script or test can call ``register_potential_kind``. A factory gets the ``PotentialSpec`` (its
``options`` table holds a plug-in's own keys), the structure's element symbols and the torch device chosen for this
rank, and raises ValueError (bad input) naming what is wrong.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from importlib.util import find_spec

from .errors import MDInputError
from .reference import LennardJones, Morse

ENTRY_POINT_GROUP = "allegro_fm_md.potentials"
_KINDS: dict[str, Callable] = {}


log = logging.getLogger("allegro_fm_md")


def _lj(spec, symbols, device):
    return LennardJones(
        _one_element(spec, symbols), epsilon=spec.epsilon, sigma=spec.sigma, cutoff=spec.cutoff
    )


def _morse(spec, symbols, device):
    return Morse(
        _one_element(spec, symbols), depth=spec.depth, a=spec.a, r0=spec.r0, cutoff=spec.cutoff
    )


def _one_element(spec, symbols) -> list[str]:
    species = sorted(set(symbols))
    if len(species) != 1:
        raise MDInputError(
            f"reference potential {spec.kind!r} is for one element; the structure has {species}"
        )
    return species


def register_potential_kind(name: str, factory: Callable) -> None:
    """Make ``kind = name`` in run files build its potential with ``factory(spec, symbols, device)``."""
    _KINDS[name] = factory


def potential_kinds() -> dict[str, Callable]:
    """All kinds: built-ins, installed packages' entry points (loaded on first use) and registered ones."""
    kinds = {"lj": _lj, "morse": _morse}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds[ep.name] = (
            ep  # loaded when used: a broken plug-in only fails the runs that ask for it
        )
    if "allegro" not in kinds and find_spec("allegro_fm_model") is not None:
        # an editable allegro-fm-model installed before it declared its entry point has no metadata for it
        kinds["allegro"] = EntryPoint(
            "allegro", "allegro_fm_model.plugin:md_potential", ENTRY_POINT_GROUP
        )
    kinds.update(_KINDS)
    return kinds


def accelerator_backend(kind: str, torch_module=None, importer=importlib.import_module):
    """The torch backend module of ``kind`` ("cuda" or "xpu"). XPU: torch's native ``torch.xpu`` (torch >= 2.4), the
    default; only where the site's torch is older and lacks it is intel-extension-for-pytorch imported, which adds
    ``torch.xpu`` (IPEX is retired upstream: its last release pins torch 2.8). MDInputError naming both when neither
    is there. ``torch_module``/``importer``: for tests with fakes."""
    torch = torch_module if torch_module is not None else importer("torch")
    backend = getattr(torch, kind, None)
    if kind == "xpu" and (backend is None or not hasattr(backend, "device_count")):
        try:
            importer("intel_extension_for_pytorch")  # registers torch.xpu on an older torch
        except ImportError as exc:
            raise MDInputError(
                f"device 'xpu' requested, but this torch ({getattr(torch, '__version__', '?')}) has no native "
                "torch.xpu and intel_extension_for_pytorch is not installed: use torch >= 2.4 built with XPU "
                "support"
            ) from exc
        backend = getattr(torch, "xpu", None)
    if backend is None or not hasattr(backend, "device_count"):
        raise MDInputError(f"device {kind!r} requested but this torch has no torch.{kind}")
    return backend


#: launcher variables that bind each rank to its own device(s) before it starts (Aurora's gpu_tile_compact.sh sets
#: ZE_AFFINITY_MASK per rank; Slurm's --gpu-bind sets CUDA_VISIBLE_DEVICES): each rank then sees only its own
PER_RANK_MASKS = {"xpu": "ZE_AFFINITY_MASK", "cuda": "CUDA_VISIBLE_DEVICES"}


def device_for_rank(
    device: str, local_rank: int, local_size: int = 1, count: int | None = None, environ=None
) -> str:
    """cuda / xpu -> this rank's device: the node-local rank modulo the device (or tile) count this rank sees, so one
    rank per GPU or tile when as many ranks as devices run on each node (comm.node_local_rank gives the local rank);
    cpu and explicit cuda:N / xpu:N unchanged. Where the launcher masked the devices per rank (ZE_AFFINITY_MASK,
    CUDA_VISIBLE_DEVICES: each rank sees one), that one is taken. ``count``: the device count (default: from torch)."""
    if device not in ("cuda", "xpu"):
        return device
    if count is None:
        count = accelerator_backend(device).device_count()
    if count == 0:
        raise MDInputError(f"device {device!r} requested but none is available on this node")
    env = os.environ if environ is None else environ
    masked = PER_RANK_MASKS[device] in env and count == 1
    if local_size > count and not masked:
        log.warning(
            "%d ranks on this node share %d %s devices (%d per device)",
            local_size,
            count,
            device,
            -(-local_size // count),
        )
    return f"{device}:{0 if masked else local_rank % count}"


def make_potential(spec, symbols: list[str], local_rank: int = 0, local_size: int = 1):
    """The potential of a run file's [potential] table on this rank's device (chosen by its node-local rank)."""
    kinds = potential_kinds()
    if spec.kind not in kinds:
        hint = (
            " (kind 'allegro' comes with the allegro-fm-model package: pip install allegro-fm-model)"
            if spec.kind == "allegro"
            else ""
        )
        raise MDInputError(
            f"unknown potential kind {spec.kind!r}; known: {', '.join(sorted(kinds))}{hint}"
        )
    factory = kinds[spec.kind]
    if not callable(factory):
        factory = factory.load()
    try:
        return factory(spec, symbols, device_for_rank(spec.device, local_rank, local_size))
    except (ValueError, OSError) as exc:  # the plug-in's bad-input errors name the file
        raise MDInputError(str(exc)) from exc
