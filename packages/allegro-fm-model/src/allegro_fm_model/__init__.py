"""allegro_fm_model: the Allegro-FM model family (FM64/FM256/FM512) on nequip + nequip-allegro: training, fine-tuning, export, ASE calculator.

Not implemented yet: this package is reserved in the monorepo layout and tracked by issue #3.
It exports only its version until then.
"""

from .__about__ import __version__

__all__ = ["__version__"]
