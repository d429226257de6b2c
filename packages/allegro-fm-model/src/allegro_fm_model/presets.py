"""The Allegro-FM presets (paper Table 1) and their mapping onto nequip-allegro hyperparameters.

The paper trained an older Allegro (nequip 0.5 era). nequip-allegro >= 0.7 has the same physics
(strictly local, edge-centred, l_max 2, full O(3), SiLU MLPs) with a different internal layout:
scalar latents are accumulated densely across layers and the readout sees all of them, the two-body
embedding is a learned per-type radial-chemical embedding followed by an MLP. Names map as follows
(the package README has the preset table):

| paper (old Allegro)                       | nequip-allegro                                                      |
|-------------------------------------------|---------------------------------------------------------------------|
| two-body latent MLP [a, b, c]             | radial_chemical_embed_dim = a, scalar-embed MLP hidden [b], output c |
| later latent MLP [w, w, w]                | num_scalar_features = w, allegro MLP hidden layers [w, w]           |
| tensor features t                         | num_tensor_features = t                                             |
| edge-energy MLP [e], "without nonlinearity"| readout MLP: a linear map (a hidden layer without nonlinearity is linear), or hidden [e] |
| embedding MLP = linear projection         | env-embed linear projections (built in)                              |
| r_max 5.2, 2 layers, l_max 2, O(3), SiLU  | r_max, num_layers, l_max, parity=True, *_nonlinearity="silu"         |

Because the two layouts differ, the three internal switches that change parameter count without
changing the paper's widths (readout depth, ``weight_individual_irreps``, allegro MLP depth) are
chosen per preset so that the trainable-parameter count lands within 3 % of the paper's (44.4 K,
690 K, 2.6 M for 89 elements); ``count_parameters`` measures it and the tests check it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from tea_align import ALLEGRO_FM_ELEMENTS


@dataclass(frozen=True)
class Preset:
    """One Allegro-FM model size. Widths are the paper's; the last four fields are nequip-allegro switches."""

    name: str
    paper_parameters: int
    tensor_features: int
    latent_mlp: tuple[int, int, int]
    two_body_mlp: tuple[int, int, int]
    edge_energy_mlp: tuple[int, ...]
    r_max: float = 5.2
    num_layers: int = 2
    l_max: int = 2
    num_bessels: int = 8
    # nequip-allegro switches (see module docstring)
    allegro_mlp_hidden_depth: int = 2
    readout_hidden_depth: int = 0
    weight_individual_irreps: bool = False

    def nequip_kwargs(
        self, type_names: tuple[str, ...] | list[str] = ALLEGRO_FM_ELEMENTS, **overrides: Any
    ) -> dict:
        """Keyword arguments of ``allegro.model.AllegroModel`` for this preset (``overrides`` win)."""
        a, b, _ = self.two_body_mlp
        w = self.latent_mlp[-1]
        kw = {
            "seed": 0,
            "model_dtype": "float32",
            "type_names": list(type_names),
            "r_max": self.r_max,
            "l_max": self.l_max,
            "parity": True,
            "radial_chemical_embed": {
                "_target_": "allegro.nn.TwoBodyBesselScalarEmbed",
                "num_bessels": self.num_bessels,
            },
            "radial_chemical_embed_dim": a,
            "scalar_embed_mlp_hidden_layers_depth": 1,
            "scalar_embed_mlp_hidden_layers_width": b,
            "scalar_embed_mlp_nonlinearity": "silu",
            "num_layers": self.num_layers,
            "num_scalar_features": w,
            "num_tensor_features": self.tensor_features,
            "allegro_mlp_hidden_layers_depth": self.allegro_mlp_hidden_depth,
            "allegro_mlp_hidden_layers_width": w,
            "allegro_mlp_nonlinearity": "silu",
            "weight_individual_irreps": self.weight_individual_irreps,
            "readout_mlp_hidden_layers_depth": self.readout_hidden_depth,
            "readout_mlp_hidden_layers_width": self.edge_energy_mlp[0],
            "readout_mlp_nonlinearity": None if self.readout_hidden_depth == 0 else "silu",
            "avg_num_neighbors": 20.0,
        }
        kw.update(overrides)
        return kw

    def to_dict(self) -> dict:
        return asdict(self)


FM64 = Preset("FM64", 44_400, 16, (64, 64, 64), (16, 32, 64), (64,))
FM256 = Preset("FM256", 690_000, 64, (256, 256, 256), (64, 128, 256), (128,))
# FM512: with the FM64/FM256 switches the count is +5.2 %; one hidden allegro MLP layer, a one-hidden-
# layer readout and per-irrep weights give +2.6 % (measured by count_parameters).
FM512 = Preset(
    "FM512",
    2_600_000,
    128,
    (512, 512, 512),
    (128, 256, 512),
    (128,),
    allegro_mlp_hidden_depth=1,
    readout_hidden_depth=1,
    weight_individual_irreps=True,
)
PRESETS: dict[str, Preset] = {p.name: p for p in (FM64, FM256, FM512)}


def tiny_preset(name: str = "tiny") -> Preset:
    """A very small preset for tests and CPU demos (not a paper model)."""
    return replace(
        FM64,
        name=name,
        paper_parameters=0,
        tensor_features=4,
        latent_mlp=(16, 16, 16),
        two_body_mlp=(8, 8, 16),
        edge_energy_mlp=(16,),
        allegro_mlp_hidden_depth=1,
    )


#: FM64's widths with l_max = 1: the shipped Allegro-FM-mini model (4.9x faster than FM64 eager, 2.8x compiled, on 2 CPU cores;
#: 41 968 parameters for 5 elements; a demonstration model, not one of the paper's).
MINI = replace(FM64, name="mini", paper_parameters=0, l_max=1)
DEMO_PRESETS: dict[str, Preset] = {"MINI": MINI, "TINY": tiny_preset()}


def get_preset(name: str | Preset) -> Preset:
    """A preset by name, case-insensitive: the paper's FM64, FM256, FM512, or the demo sizes mini and tiny."""
    if isinstance(name, Preset):
        return name
    key = str(name).upper()
    if key in DEMO_PRESETS:
        return DEMO_PRESETS[key]
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}, mini, tiny")
    return PRESETS[key]
