"""tea-align: fuse quantum-chemistry datasets computed at different levels of theory (Total Energy Alignment).

Public façade:

- ``Frame``, ``open_dataset`` / ``AlignedDataset``: the typed reader of aligned-dataset files (schema v1)
- ``InputSpec``, ``read_frames``: streaming readers (extxyz/ase.io, MPtrj JSON, SPICE HDF5, Transition1x)
- ``fit``, ``apply``, ``convert``, ``inspect``, ``Preprocessing``: the pipeline
- ``Alignment``, ``LevelShift``, ``fit_alignment``: the TEA transform
- ``TeaAlignError``: every bad-input error, naming file and frame
- ``elements``, ``units``: element sets and unit conversions
- ``files``: atomic output files (``write_text_atomic``, ``write_bytes_atomic``, ``atomic_path``, ``AtomicFile``,
  ``check_output_path``),
  used by all packages of the project
- ``Progress``, ``progress``: progress output (a bar on a terminal, a plain line every 10 % in a log), used by all packages
"""

from .__about__ import __version__
from .alignment import Alignment, AnchorPair, LevelShift, collect_anchors, fit_alignment
from .dataset import SCHEMA, SCHEMA_VERSION, AlignedDataset, DatasetWriter, open_dataset
from .elements import ALLEGRO_FM_ELEMENTS, MPTRJ_ELEMENTS, NOBLE_GASES
from .errors import TeaAlignError
from .files import AtomicFile, atomic_path, check_output_path, write_bytes_atomic, write_text_atomic
from .frame import Frame, FrameBatch, SourceInfo
from .pipeline import ApplySummary, Preprocessing, apply, convert, fit, inspect
from .progress import Progress, progress
from .readers import InputSpec, read_frames

__all__ = [
    "__version__",
    "Alignment",
    "AnchorPair",
    "LevelShift",
    "collect_anchors",
    "fit_alignment",
    "SCHEMA",
    "SCHEMA_VERSION",
    "AlignedDataset",
    "DatasetWriter",
    "open_dataset",
    "ALLEGRO_FM_ELEMENTS",
    "MPTRJ_ELEMENTS",
    "NOBLE_GASES",
    "TeaAlignError",
    "Frame",
    "FrameBatch",
    "SourceInfo",
    "ApplySummary",
    "Preprocessing",
    "apply",
    "convert",
    "fit",
    "inspect",
    "InputSpec",
    "read_frames",
    "AtomicFile",
    "atomic_path",
    "check_output_path",
    "write_bytes_atomic",
    "write_text_atomic",
    "Progress",
    "progress",
]
