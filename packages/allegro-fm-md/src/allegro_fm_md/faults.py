"""Fault injection at the engine's collective points, for the tests that prove no failure on one rank hangs the others.

``ALLEGRO_FM_FAULT="POINT@RANK"`` (or ``POINT@RANK:input`` for bad input instead of a fault) makes rank RANK fail at
POINT: ``setup`` (reading the structure and loading the potential), ``restart-read`` (reading its restart shards),
``shard-write`` (writing its restart shard), ``merge`` (merging a sharded trajectory). Unset, ``inject`` costs one
dictionary lookup. Written here: no library injects faults into an MPI program's collective points.
"""

from __future__ import annotations

import os

from .errors import MDInputError

POINTS = ("setup", "restart-read", "shard-write", "merge")
VARIABLE = "ALLEGRO_FM_FAULT"


class InjectedFault(RuntimeError):
    """The failure ``inject`` raises (a fault, not bad input)."""


def inject(point: str, rank: int = 0) -> None:
    """Raise at ``point`` on ``rank`` when ``ALLEGRO_FM_FAULT`` asks for it (see the module docstring)."""
    want = os.environ.get(VARIABLE)
    if not want:
        return
    where, _, kind = want.partition(":")
    name, _, at = where.partition("@")
    if name == point and at.isdigit() and int(at) == rank:
        if kind == "input":
            raise MDInputError(f"injected bad input at {point} on rank {rank}")
        raise InjectedFault(f"injected fault at {point} on rank {rank}")
