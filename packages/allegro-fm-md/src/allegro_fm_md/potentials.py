"""Potential kinds of the run file's ``[potential] kind = ...``: name -> factory(spec, symbols, device) -> Potential.

Built in: ``lj`` and ``morse`` (reference.py). Other packages add kinds through the entry-point group
``allegro_fm_md.potentials`` (allegro-fm-model registers ``allegro``: the engine itself never imports a model
package); a script or test can call ``register_potential_kind``. A factory gets the ``PotentialSpec`` (its
``options`` table holds a plug-in's own keys), the structure's element symbols and the torch device chosen for this
rank, and raises ValueError (bad input) naming what is wrong.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from importlib.util import find_spec

from .errors import MDInputError
from .reference import LennardJones, Morse

ENTRY_POINT_GROUP = "allegro_fm_md.potentials"
_KINDS: dict[str, Callable] = {}


log = logging.getLogger("allegro_fm_md")

def _lj(spec, symbols, device):
    return LennardJones(_one_element(spec, symbols), epsilon=spec.epsilon, sigma=spec.sigma, cutoff=spec.cutoff)


def _morse(spec, symbols, device):
    return Morse(_one_element(spec, symbols), depth=spec.depth, a=spec.a, r0=spec.r0, cutoff=spec.cutoff)


def _one_element(spec, symbols) -> list[str]:
    species = sorted(set(symbols))
    if len(species) != 1:
        raise MDInputError(f"reference potential {spec.kind!r} is for one element; the structure has {species}")
    return species


def register_potential_kind(name: str, factory: Callable) -> None:
    """Make ``kind = name`` in run files build its potential with ``factory(spec, symbols, device)``."""
    _KINDS[name] = factory


def potential_kinds() -> dict[str, Callable]:
    """All kinds: built-ins, installed packages' entry points (loaded on first use) and registered ones."""
    kinds = {"lj": _lj, "morse": _morse}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        kinds[ep.name] = ep  # loaded when used: a broken plug-in only fails the runs that ask for it
    if "allegro" not in kinds and find_spec("allegro_fm_model") is not None:
        # an editable allegro-fm-model installed before it declared its entry point has no metadata for it
        kinds["allegro"] = EntryPoint("allegro", "allegro_fm_model.plugin:md_potential", ENTRY_POINT_GROUP)
    kinds.update(_KINDS)
    return kinds


def device_for_rank(device: str, local_rank: int, local_size: int = 1, count: int | None = None) -> str:
    """cuda / xpu -> this rank's device: the node-local rank modulo the node's device (or tile) count, so one rank per
    GPU or tile when as many ranks as devices run on each node (comm.node_local_rank gives the local rank); cpu and
    explicit cuda:N / xpu:N unchanged. ``count``: the device count (default: asked from torch)."""
    if device not in ("cuda", "xpu"):
        return device
    if count is None:
        import torch  # lazy: only for accelerators

        count = torch.cuda.device_count() if device == "cuda" else torch.xpu.device_count()
    if count == 0:
        raise MDInputError(f"device {device!r} requested but none is available on this node")
    if local_size > count:
        log.warning("%d ranks on this node share %d %s devices (%d per device)", local_size, count, device, -(-local_size // count))
    return f"{device}:{local_rank % count}"


def make_potential(spec, symbols: list[str], local_rank: int = 0, local_size: int = 1):
    """The potential of a run file's [potential] table on this rank's device (chosen by its node-local rank)."""
    kinds = potential_kinds()
    if spec.kind not in kinds:
        hint = " (kind 'allegro' comes with the allegro-fm-model package: pip install allegro-fm-model)" if spec.kind == "allegro" else ""
        raise MDInputError(f"unknown potential kind {spec.kind!r}; known: {', '.join(sorted(kinds))}{hint}")
    factory = kinds[spec.kind]
    if not callable(factory):
        factory = factory.load()
    try:
        return factory(spec, symbols, device_for_rank(spec.device, local_rank, local_size))
    except (ValueError, OSError) as exc:  # the plug-in's bad-input errors name the file
        raise MDInputError(str(exc)) from exc
