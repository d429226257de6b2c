"""allegro_fm_md: a distributed, strictly-local MD engine (MPI spatial decomposition, numba neighbour lists, torch on CPU/CUDA/XPU).

Not implemented yet: this package is reserved in the monorepo layout and tracked by issue #4.
It exports only its version until then.
"""

from .__about__ import __version__

__all__ = ["__version__"]
