"""allegro_fm_bench: reproduction of the paper's results (EOS, g(r), NEB, tensile test, carbonation, Transition1x, scaling) as tables and plots.

Not implemented yet: this package is reserved in the monorepo layout and tracked by issue #6.
It exports only its version until then.
"""

from .__about__ import __version__

__all__ = ["__version__"]
