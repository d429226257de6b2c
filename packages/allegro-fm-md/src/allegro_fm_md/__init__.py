"""allegro_fm_md: a distributed, strictly-local MD engine for Allegro-FM models.

In progress (issue #4). What exists:

- ``build_edges``, ``VerletList``: numba cell lists over local + ghost atoms with a Verlet skin (neighbor.py)
- ``LennardJones``, ``Morse``: reference potentials with the same call as Allegro-FM's (reference.py)

Not yet: decomposition, ghost exchange, integrators, thermostats, barostat, I/O, guards, the CLI.
"""

from .__about__ import __version__
from .neighbor import VerletList, build_edges
from .reference import LennardJones, Morse, PairResult

__all__ = ["__version__", "VerletList", "build_edges", "LennardJones", "Morse", "PairResult"]
