"""Allegro 0.3.0 / nequip 0.6.1 deployed models in plain PyTorch: the port that AOTInductor compiles.

The published Allegro-FM files (``afm256_01_HL.pt``, ``afm512_01_HL.pt``) are TorchScript (``legacy.py``), which
torch.export cannot read. ``port_legacy`` rebuilds their forward pass as an ordinary ``torch.nn.Module``
(``Allegro030``) and loads every parameter and buffer from the deployed file by name; ``export.compile_model`` then
compiles the port like our own models. Written by hand because neither nequip >= 0.7 nor nequip-allegro >= 0.4 has
this architecture (see ``legacy_finetune.py`` for how it differs) and the TorchScript code cannot be exported.

The functional form, read from the Allegro 0.3.0 release (allegro/nn/*.py) and nequip 0.6.1:

- radial basis: sin(r w_n) / (pi r / r_c) times the polynomial cutoff u_p(r / r_c), trainable w_n (per edge type, with
  per-edge-type cutoffs r_c when the file has them);
- ``ProductTypeEmbedding``: a linear projection of the basis times cat(centre type embedding, neighbour type embedding);
- spherical harmonics of the edge direction (e3nn, the file's l and normalization);
- each layer: latent MLP -> env-embed MLP -> per-irrep channel weights; the environment is the weighted sum over the
  other edges of the same centre; a uuu tensor product with the file's own Wigner-3j buffer, a strided linear over the
  paths, and the scalar paths feed the next latent (ResNet mixing with the file's coefficients);
- the final latent, the edge-energy MLP, the edge energies summed on their centre atom times 1/sqrt(avg_num_neighbors);
- per-species scale and shift (``PerSpeciesRescale``), then the global scale (``RescaleEnergyEtc``).

The hyperparameters come from the file: the stored training config (l_max, parity, MLP nonlinearities, mixing mode,
model builders) and the modules' own attributes and buffer shapes (layers, tensor features, latent sizes, cutoff p,
avg_num_neighbors). Options this port does not implement are refused with ``LegacyPortError`` naming the config key;
the structure is checked against the file (every module, every Wigner-3j shape), and ``export.compile_model`` checks
the port against the TorchScript original before it writes anything.

Call convention (pair_allegro's, as the compiled file): ``forward({"pos", "edge_index", "atom_types"})`` with
periodic images as explicit ghost atoms; returns ``atomic_energy`` (N, 1) eV, ``forces`` (N, 3) eV/A on every atom
given, ``virial`` (1, 3, 3) eV (W = -sum r_ij (x) dE/dr_ij). Positions may be float64; like nequip 0.6.1 they are cast
to the model dtype before the edge vectors are taken (taking them in float64 first changes float32 forces by ~1e-5 eV/A
on the fixture, beyond the round-off the original is matched to).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from .legacy import LegacyAllegroPotential, LegacyModelError, load_legacy_module

#: revision of the port's code: part of the compile-on-first-use cache key of nequip 0.6 files (plugin.py), so a
#: changed port recompiles them
PORT_REVISION = 2


class LegacyPortError(LegacyModelError):
    """A nequip 0.6 file this port does not reproduce: the message names the config key (or module) and its value."""


#: model builders of nequip 0.6 / Allegro 0.3.0 the port implements (name after the last dot)
SUPPORTED_BUILDERS = (
    "Allegro",
    "PerSpeciesRescale",
    "StressForceOutput",
    "ForceOutput",
    "RescaleEnergyEtc",
)
#: config keys whose value must be this (the default) for the port to be exact
REQUIRED_VALUES = {
    "tensors_mixing_mode": ("uuulin", None),
    "use_original_normalized_basis": (False, None),
    "two_body_latent_mlp_bfloat16": (False, None),
    "latent_mlp_bfloat16": (False, None),
    "env_embed_mlp_bfloat16": (False, None),
    "edge_eng_mlp_bfloat16": (False, None),
    "typeembed_radial_basis_mlp_bfloat16": (False, None),
}
#: submodules of the energy graph (SequentialGraphNetwork) the port implements: name -> nequip/Allegro class
EXPECTED_LAYERS = {
    "radial_basis": "AllegroBesselBasis",
    "typeembed": "ProductTypeEmbedding",
    "spharm": "SphericalHarmonicEdgeAttrs",
    "allegro": "Allegro_Module",
    "edge_eng": "ScalarMLP",
    "edge_eng_sum": "EdgewiseEnergySum",
    "per_species_rescale": "PerSpeciesScaleShift",
    "total_energy_sum": "AtomwiseReduce",
}
_OPTIONAL_LAYERS = ("per_species_rescale",)


def read_config(text: str, path) -> dict:
    """The training config nequip-deploy stored (YAML with python tags: e3nn Irreps, tuples, kept as plain data)."""
    import yaml  # lazy: only the port reads configs

    class _Loader(yaml.SafeLoader):
        pass

    def raw(loader, suffix, node):
        if isinstance(node, yaml.MappingNode):
            return {"__tag__": suffix, **loader.construct_mapping(node, deep=True)}
        if isinstance(node, yaml.SequenceNode):
            return {"__tag__": suffix, "args": loader.construct_sequence(node, deep=True)}
        return {"__tag__": suffix, "value": loader.construct_scalar(node)}

    _Loader.add_multi_constructor("tag:yaml.org,2002:python/", raw)
    try:
        cfg = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        raise LegacyPortError(f"{path}: the stored config is not readable YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise LegacyPortError(
            f"{path}: the file stores no training config (extra/config); the port needs it"
        )
    return cfg


def check_config(cfg: dict, path) -> None:
    """LegacyPortError naming the first config key whose value the port does not implement."""
    builders = cfg.get("model_builders")
    if builders is not None:
        for b in builders:
            if str(b).rsplit(".", 1)[-1] not in SUPPORTED_BUILDERS:
                raise LegacyPortError(
                    f"{path}: config key model_builders has {b!r}, which this port does not implement "
                    f"(supported: {', '.join(SUPPORTED_BUILDERS)}); the file still runs as TorchScript"
                )
    for key, allowed in REQUIRED_VALUES.items():
        if key in cfg and cfg[key] not in allowed:
            raise LegacyPortError(
                f"{path}: config key {key} = {cfg[key]!r} is not implemented by this port (only "
                f"{allowed[0]!r}); the file still runs as TorchScript"
            )
    parity = cfg.get("parity", "o3_full")
    if parity not in ("o3_full", "o3_restricted", "so3"):
        raise LegacyPortError(f"{path}: config key parity = {parity!r} is not known")


def _nonlinearity(name):
    """(function, e3nn normalize2mom constant) of an Allegro 0.3.0 MLP nonlinearity."""
    from e3nn.math import normalize2mom  # lazy: e3nn imports torch; only the port needs it

    if name == "silu":
        f = torch.nn.functional.silu
    elif name == "ssp":

        def f(x):  # nequip's ShiftedSoftPlus
            return torch.nn.functional.softplus(x) - math.log(2.0)

    else:
        raise ValueError(name)
    return f, normalize2mom(f).cst


class ScalarMLP(torch.nn.Module):
    """Allegro 0.3.0's ``ScalarMLPFunction``: bias-free layers, weights scaled by 1/sqrt(fan-in), the nonlinearity's
    second-moment constant folded into the next layer (e3nn ``normalize2mom``)."""

    def __init__(self, weights: list[torch.Tensor], nonlinearity: str | None):
        super().__init__()
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w.clone()) for w in weights])
        self.nonlinearity = nonlinearity if len(weights) > 1 else None
        self._f, self._cst = _nonlinearity(self.nonlinearity) if self.nonlinearity else (None, 1.0)
        self.out_features = int(weights[-1].shape[1])

    def forward(self, x):
        norm = 1.0
        for i, w in enumerate(self.weights):
            x = (x @ w) * (norm / math.sqrt(w.shape[0]))
            if self._f is not None and i < len(self.weights) - 1:
                x = self._f(x)
                norm = self._cst
        return x


@dataclass(frozen=True)
class LayerPlan:
    """One Allegro layer's irreps bookkeeping: dims of the feature (in1), environment (in2) and path-output (out)
    layouts, and the linear's groups: (start, stop) of path outputs in the strided out layout, their irrep dim, the
    number of paths n and the input slice into ``w``."""

    dim_in1: int
    dim_in2: int
    dim_paths: int
    diagonal: bool
    n_scalar_outs: int
    groups: tuple[
        tuple[int, int, int, int, int, int], ...
    ]  # (path_start, path_stop, ir_dim, n, w_start, w_stop)


def _layer_plans(cfg: dict, num_layers: int, mul: int, path) -> tuple[object, list[LayerPlan]]:
    """The SH irreps and per-layer plans, rebuilt from the config as Allegro 0.3.0's constructor builds them."""
    from e3nn import o3  # lazy: e3nn imports torch; only the port needs it

    if "l_max" in cfg:
        l_max, parity = int(cfg["l_max"]), cfg.get("parity", "o3_full")
        sh = o3.Irreps.spherical_harmonics(l_max, p=(1 if parity == "so3" else -1))
        allowed = (
            o3.Irreps([(1, (ll, p)) for ll in range(l_max + 1) for p in (1, -1)])
            if parity == "o3_full"
            else sh
        )
    elif isinstance(cfg.get("irreps_edge_sh"), str) and isinstance(
        cfg.get("tensor_track_allowed_irreps"), str
    ):
        sh = o3.Irreps(cfg["irreps_edge_sh"])
        allowed = o3.Irreps(cfg["tensor_track_allowed_irreps"])
    else:
        raise LegacyPortError(
            f"{path}: the config has neither l_max nor string irreps_edge_sh / tensor_track_allowed_irreps"
        )
    env = o3.Irreps([(1, ir) for _, ir in sh])
    scalar = o3.Irrep("0e")

    def path_exists(a, b, ir_out):
        return any(ir_out in i1 * i2 for _, i1 in a for _, i2 in b)

    arg, tps = env, [env]
    for layer in range(num_layers):
        ir_out = o3.Irreps([(1, (0, 1))]) if layer == num_layers - 1 else allowed
        ir_out = o3.Irreps([(m, ir) for m, ir in ir_out if path_exists(arg, env, ir)])
        arg = ir_out
        tps.append(ir_out)
    out, pruned = tps[-1], [tps[-1]]
    for arg in reversed(tps[:-1]):
        keep = o3.Irreps(
            [(m, a) for m, a in arg if any(any(i in out for i in a * e) for _, e in env)]
        )
        pruned.append(keep)
        out = keep
    tps = list(reversed(pruned))
    plans = []
    for arg, outs in zip(tps[:-1], tps[1:]):
        paths = []  # output irrep of each path, grouped by output (the constructor's loop order)
        for _, ir_o in outs:
            for _, ir_1 in arg:
                for _, ir_2 in env:
                    if ir_o in ir_1 * ir_2:
                        paths.append(ir_o)
        n_scalar = sum(1 for ir in paths if ir == scalar)
        groups, start, w_start = [], 0, 0
        for _, ir_o in outs:
            n = sum(1 for ir in paths if ir == ir_o)
            w_stop = w_start + mul * n * mul
            groups.append((start, start + n * ir_o.dim, ir_o.dim, n, w_start, w_stop))
            start, w_start = start + n * ir_o.dim, w_stop
        plans.append(
            LayerPlan(
                dim_in1=arg.dim,
                dim_in2=env.dim,
                dim_paths=sum(ir.dim for ir in paths),
                diagonal=False,
                n_scalar_outs=n_scalar,
                groups=tuple(groups),
            )
        )
    return sh, plans


def _bessel_cutoff(r, rmax_recip, weights, p: float):
    """Allegro 0.3.0's normalized Bessel basis times the polynomial cutoff, and the cutoff alone."""
    x = r * rmax_recip
    bessel = torch.sin(r * weights) / (math.pi * x)
    cut = (
        1.0
        - ((p + 1.0) * (p + 2.0) / 2.0) * torch.pow(x, p)
        + (p * (p + 2.0)) * torch.pow(x, p + 1.0)
        - (p * (p + 1.0) / 2.0) * torch.pow(x, p + 2.0)
    ) * (x < 1.0)
    return bessel * cut


class Allegro030(torch.nn.Module):
    """The energy, forces and virial of an Allegro 0.3.0 deployed model, in plain PyTorch (module docstring).
    Built by ``port_legacy``; ``metadata`` holds what the compiled file records (type_names, r_max, model_dtype...)."""

    #: layer 0's tensor product with the edge weights contracted first (module docstring of ``atomic_energies``)
    factor_first_tp: bool = True

    def __init__(self, module, meta: dict[str, str], cfg: dict, path):
        super().__init__()
        root = module
        rescales = []
        prefix = ""  # the energy graph's name prefix in the TorchScript file (model.model.func.)
        while root.original_name == "GraphModel" or root.original_name == "RescaleOutput":
            if root.original_name == "RescaleOutput":
                rescales.append(root)
            root = root.model
            prefix += "model."
        if root.original_name not in ("StressOutput", "GradientOutput", "ForceOutput"):
            raise LegacyPortError(
                f"{path}: the energy model is wrapped in {root.original_name}, which this port does not implement"
            )
        func = root.func
        layers = {name: sub.original_name for name, sub in func.named_children()}
        for name, kind in layers.items():
            if EXPECTED_LAYERS.get(name) != kind:
                raise LegacyPortError(
                    f"{path}: model layer {name!r} ({kind}) is not implemented by this port (it implements "
                    f"{', '.join(f'{k} ({v})' for k, v in EXPECTED_LAYERS.items())}); the file still runs as TorchScript"
                )
        missing = [k for k in EXPECTED_LAYERS if k not in layers and k not in _OPTIONAL_LAYERS]
        if missing:
            raise LegacyPortError(f"{path}: model layers {missing} are missing")
        if len(rescales) > 1:
            raise LegacyPortError(f"{path}: {len(rescales)} nested RescaleOutput modules")

        self.species = tuple(meta["type_names"].split())
        self.cutoff = float(meta["r_max"])
        self.model_dtype = getattr(torch, meta.get("model_dtype") or "float32")
        self.default_dtype = getattr(torch, meta.get("default_dtype") or "float32")
        dt = self.model_dtype

        def buf(t):
            return t.detach().clone().to(dt)

        # radial basis
        rb = func.radial_basis
        self.per_edge_type = bool(rb._per_edge_type)
        self.num_types = len(self.species)
        self.p = float(rb.PolynomialCutoff_p)
        self.bessel_weights = torch.nn.Parameter(buf(rb.bessel_weights))
        self.register_buffer("rmax_recip", buf(rb._rmax_recip))
        # type embedding
        te = func.typeembed
        self.type_embeddings = torch.nn.Parameter(buf(te.type_embeddings))
        self.basis_mlp = self._mlp(te.basis_mlp, None, dt)
        # spherical harmonics
        sh_mod = func.spharm.sh
        self.sh_ls = [int(v) for v in sh_mod._ls_list]
        self.sh_normalize = bool(sh_mod.normalize)
        self.sh_normalization = str(sh_mod.normalization)
        # Allegro layers
        al = func.allegro
        self.num_layers = int(al.num_layers)
        self.mul = int(al.num_tensor_features)
        self.latent_resnet = bool(al.latent_resnet)
        self.self_edge_tp = bool(al.self_edge_tensor_product)
        nl = {  # config key -> nonlinearity (Allegro 0.3.0's default silu when the key is absent)
            key: cfg.get(key, "silu")
            for key in (
                "two_body_latent_mlp_nonlinearity",
                "latent_mlp_nonlinearity",
                "env_embed_mlp_nonlinearity",
                "edge_eng_mlp_nonlinearity",
            )
        }
        for key, v in nl.items():
            if v not in (None, "silu", "ssp"):
                raise LegacyPortError(
                    f"{path}: config key {key} = {v!r} is not implemented by this port (silu, ssp or null); "
                    "the file still runs as TorchScript"
                )
        nl = {k.split("_mlp")[0]: v for k, v in nl.items()}
        self.latents = torch.nn.ModuleList(
            [
                self._mlp(
                    getattr(al.latents, str(i)), nl["two_body_latent" if i == 0 else "latent"], dt
                )
                for i in range(self.num_layers)
            ]
        )
        self.env_embed_mlps = torch.nn.ModuleList(
            [
                self._mlp(getattr(al.env_embed_mlps, str(i)), nl["env_embed"], dt)
                for i in range(self.num_layers)
            ]
        )
        self.final_latent = self._mlp(al.final_latent, nl["latent"], dt)
        self.edge_eng = self._mlp(func.edge_eng._module, nl["edge_eng"], dt)
        self.linear_w = torch.nn.ParameterList(
            [torch.nn.Parameter(buf(getattr(al.linears, str(i)).w)) for i in range(self.num_layers)]
        )
        w3js = [buf(getattr(al.tps, str(i))._big_w3j) for i in range(self.num_layers)]
        for i, w in enumerate(w3js):
            self.register_buffer(f"w3j_{i}", w)
        self.register_buffer("resnet_params", buf(al._latent_resnet_coefficients_params))
        self.weight_individual = al._edge_weighter._rtoi.numel() > 0
        if self.weight_individual:
            self.register_buffer("edge_rtoi", buf(al._edge_weighter._rtoi))
            self.register_buffer("env_rtoi", buf(al._env_weighter._rtoi))
        self.edge_alpha = float(al._edge_weighter.alpha)
        self.env_alpha = float(al._env_weighter.alpha)
        self.edge_weight_numel = int(al._edge_weighter.weight_numel)
        self.env_weight_numel = int(al._env_weighter.weight_numel)
        factor = func.edge_eng_sum._factor
        self.edge_sum_factor = None if factor is None else float(factor)
        # per-species and global rescaling (in the file's default dtype, as nequip 0.6 promotes to it)
        psr = getattr(func, "per_species_rescale", None)
        self.has_scales = bool(psr is not None and psr.has_scales)
        self.has_shifts = bool(psr is not None and psr.has_shifts)
        dd = self.default_dtype
        self.register_buffer(
            "scales", psr.scales.detach().clone().to(dd) if self.has_scales else torch.ones(0)
        )
        self.register_buffer(
            "shifts", psr.shifts.detach().clone().to(dd) if self.has_shifts else torch.zeros(0)
        )
        scale = 1.0
        if rescales:
            r = rescales[0]
            if bool(r.has_shift):
                raise LegacyPortError(
                    f"{path}: config key global_rescale_shift is set ({r.shift_by.tolist()}): a shift of the total "
                    "energy only, which per-atom energies cannot carry; not ported"
                )
            if bool(r.has_scale):
                keys = set(r.scale_keys)
                if not {"atomic_energy", "forces"} <= keys:
                    raise LegacyPortError(
                        f"{path}: RescaleOutput scales {sorted(keys)} but not atomic_energy and forces together"
                    )
                scale = float(r.scale_by)
        self.global_scale = scale

        # irreps plan, checked against the file's Wigner-3j buffers and linear weights
        _, self.plans = _layer_plans(cfg, self.num_layers, self.mul, path)
        for i, (plan, w3j, lw) in enumerate(zip(self.plans, w3js, self.linear_w)):
            diagonal = w3j.ndim == 2
            want = (
                (plan.dim_paths, plan.dim_in1)
                if diagonal
                else (plan.dim_paths, plan.dim_in1, plan.dim_in2)
            )
            if tuple(w3j.shape) != want or lw.numel() != plan.groups[-1][5]:
                raise LegacyPortError(
                    f"{path}: layer {i}: the file's tensor product ({tuple(w3j.shape)}, linear {lw.numel()}) "
                    f"does not match l_max/parity of its config ({want}, {plan.groups[-1][5]})"
                )
            if list(al._n_scalar_outs)[i] != plan.n_scalar_outs:
                raise LegacyPortError(
                    f"{path}: layer {i}: scalar path count differs from the config"
                )
            self.plans[i] = LayerPlan(**{**plan.__dict__, "diagonal": diagonal})
        # port parameter -> the TorchScript parameter it came from (write_back puts trained values there)
        names = {
            "bessel_weights": "radial_basis.bessel_weights",
            "type_embeddings": "typeembed.type_embeddings",
        }
        mlps = {
            "basis_mlp": "typeembed.basis_mlp",
            "final_latent": "allegro.final_latent",
            "edge_eng": "edge_eng._module",
            **{f"latents.{i}": f"allegro.latents.{i}" for i in range(self.num_layers)},
            **{
                f"env_embed_mlps.{i}": f"allegro.env_embed_mlps.{i}" for i in range(self.num_layers)
            },
        }
        for ours, theirs in mlps.items():
            for k in range(len(self.get_submodule(ours).weights)):
                names[f"{ours}.weights.{k}"] = f"{theirs}._forward._weight_{k}"
        for i in range(self.num_layers):
            names[f"linear_w.{i}"] = f"allegro.linears.{i}.w"
        self.source_names = {k: prefix + "func." + v for k, v in names.items()}
        ts_params = {n for n, _ in module.named_parameters()}
        #: trainable parameters of the file that the port holds as constants (not trained through the port)
        self.constant_in_port = sorted(ts_params - set(self.source_names.values()))
        self.metadata = {
            "model_dtype": meta.get("model_dtype") or "float32",
            "type_names": " ".join(self.species),
            "num_types": str(len(self.species)),
            "r_max": meta["r_max"],
        }
        if meta.get("per_edge_type_cutoff"):
            self.metadata["per_edge_type_cutoff"] = meta["per_edge_type_cutoff"]

    @staticmethod
    def _mlp(fn, nonlinearity, dt) -> ScalarMLP:
        fwd = fn._forward
        ws, k = [], 0
        while hasattr(fwd, f"_weight_{k}"):
            ws.append(getattr(fwd, f"_weight_{k}").detach().clone().to(dt))
            k += 1
        if any(hasattr(fwd, f"_bias_{j}") for j in range(k)):
            raise LegacyPortError("an MLP with biases (mlp_bias) is not implemented")
        return ScalarMLP(ws, nonlinearity)

    def write_back(self, module) -> None:
        """Copy this port's parameters into the TorchScript ``module`` (unfrozen, the file it was ported from), in
        place: the file format then carries what was trained through the port."""
        theirs = dict(module.named_parameters())
        with torch.no_grad():
            for ours, p in self.named_parameters():
                target = theirs[self.source_names[ours]]
                target.copy_(p.detach().to(target.dtype).to(target.device))

    # -- the energy -------------------------------------------------------------------------------------------------
    def _sh(self, vec):
        from e3nn import o3  # lazy: e3nn imports torch; only the port needs it

        return o3.spherical_harmonics(
            self.sh_ls, vec, normalize=self.sh_normalize, normalization=self.sh_normalization
        )

    def _weighted(self, attrs, w, rtoi, alpha):
        """Allegro's MakeWeightedChannels: (E, mul, dim_sh) channels of the edge SH weighted per irrep."""
        if self.weight_individual:
            per = (w.reshape(-1, rtoi.shape[0]) @ rtoi).reshape(-1, self.mul, rtoi.shape[1])
            return attrs.unsqueeze(1) * per
        return w.unsqueeze(-1) * (alpha * attrs.unsqueeze(-2))

    def _linear(self, x, w, plan: LayerPlan):
        # out[z, v, i] = sum_{u, n} w[v, u, n] x[z, u, n, i] / sqrt(mul n): matmuls, not einsum (whose decomposition
        # fixes the edge count when traced for export)
        outs = []
        for start, stop, ir_dim, n, w0, w1 in plan.groups:
            xs = x[:, :, start:stop].reshape(-1, self.mul * n, ir_dim).transpose(1, 2)  # z i (u n)
            ws = w[w0:w1].reshape(self.mul, self.mul * n) * (1.0 / math.sqrt(self.mul * n))
            outs.append((xs @ ws.T).transpose(1, 2))  # z v i
        return torch.cat(outs, dim=-1)

    def atomic_energies(self, vec, edge_index, atom_types, n_atoms: int):
        """Per-atom energies (n_atoms,) eV in the file's default dtype from edge vectors (E, 3) A (model dtype)."""
        centre, neigh = edge_index[0], edge_index[1]
        r = torch.linalg.norm(vec, dim=-1, keepdim=True)
        if self.per_edge_type:
            et = atom_types[centre] * self.num_types + atom_types[neigh]
            embed = _bessel_cutoff(
                r, self.rmax_recip[et].unsqueeze(-1), self.bessel_weights[et], self.p
            )
        else:
            embed = _bessel_cutoff(r, self.rmax_recip, self.bessel_weights, self.p)
        basis = self.basis_mlp(embed)
        type_embed = torch.cat(
            (
                self.type_embeddings[0][atom_types[centre]],
                self.type_embeddings[1][atom_types[neigh]],
            ),
            dim=-1,
        )
        invariants = type_embed * basis
        attrs = self._sh(vec)

        coeffs = self.resnet_params
        coeffs = (coeffs - coeffs.max()).exp()
        cumsum = coeffs.cumsum(dim=0) + 1e-12
        inputs = [invariants]
        prev: list = []
        latents = invariants  # replaced in layer 0
        features = attrs
        for layer in range(self.num_layers):
            plan = self.plans[layer]
            new = self.latents[layer](torch.cat(inputs, dim=-1))
            if self.latent_resnet and layer > 0:
                latents = (cumsum[layer - 1] / cumsum[layer]).sqrt() * latents + (
                    coeffs[layer] / cumsum[layer]
                ).sqrt() * new
                prev = [latents]
            else:
                latents = new
                prev.append(latents)
            weights = self.env_embed_mlps[layer](latents)
            w_index = 0
            if layer == 0:
                ew = weights[:, : self.edge_weight_numel]
                w_index = self.edge_weight_numel
                features = self._weighted(
                    attrs, ew, getattr(self, "edge_rtoi", None), self.edge_alpha
                )
            env_w = weights[:, w_index : w_index + self.env_weight_numel]
            env_edges = self._weighted(
                attrs, env_w, getattr(self, "env_rtoi", None), self.env_alpha
            )
            env = torch.zeros(
                (n_atoms,) + env_edges.shape[1:], dtype=env_edges.dtype, device=env_edges.device
            ).index_add(0, centre, env_edges)[centre]
            if not self.self_edge_tp:
                env = env - env_edges
            x1 = features.reshape(-1, self.mul, plan.dim_in1)
            x2 = env.reshape(-1, self.mul, plan.dim_in2)
            # out[z, u, k] = sum_ij x1[z, u, i] x2[z, u, j] w3j[k, i, j] (diagonal files: w3j[k, i], j = i): the outer
            # product times the dense buffer, as the original (a form over the nonzero terms compiled slower: docs)
            w3j = getattr(self, f"w3j_{layer}")
            factored = (
                layer == 0 and self.weight_individual and not plan.diagonal and self.factor_first_tp
            )
            if factored:
                # layer 0: x1[z, u, i] = attrs[z, i] sum_r ew[z, u, r] rtoi[r, i], so
                # out[z, u, k] = sum_(r, j) ew[z, u, r] x2[z, u, j] M[z, (r, j), k] with the per-edge
                # M[z, r, j, k] = sum_i rtoi[r, i] attrs[z, i] w3j[k, i, j]: 3x fewer products, no (E, U, 81) buffer
                rtoi = self.edge_rtoi
                n_r, d = rtoi.shape
                a = (attrs.unsqueeze(1) * rtoi.unsqueeze(0)).reshape(-1, d)  # (E R, i)
                m = (a @ w3j.permute(1, 2, 0).reshape(d, -1)).reshape(
                    -1, n_r * plan.dim_in2, plan.dim_paths
                )
                p = (ew.reshape(-1, self.mul, n_r, 1) * x2.unsqueeze(2)).reshape(
                    -1, self.mul, n_r * plan.dim_in2
                )
                features = torch.bmm(p, m)
            else:
                if plan.diagonal:
                    prod = (x1 * x2).reshape(-1, plan.dim_in1)
                else:
                    prod = (x1.unsqueeze(-1) * x2.unsqueeze(-2)).reshape(
                        -1, plan.dim_in1 * plan.dim_in2
                    )
                features = (prod @ w3j.reshape(plan.dim_paths, -1).T).reshape(
                    -1, self.mul, plan.dim_paths
                )
            scalars = features[:, :, : plan.n_scalar_outs].reshape(
                -1, self.mul * plan.n_scalar_outs
            )
            features = self._linear(features, self.linear_w[layer], plan)
            inputs = prev + [scalars]
        new = self.final_latent(torch.cat(inputs, dim=-1))
        if self.latent_resnet:
            n = self.num_layers
            latents = (cumsum[n - 1] / cumsum[n]).sqrt() * latents + (
                coeffs[n] / cumsum[n]
            ).sqrt() * new
        else:
            latents = new
        edge_e = self.edge_eng(latents).reshape(-1)
        if self.edge_sum_factor is not None:
            edge_e = edge_e * self.edge_sum_factor
        atom_e = torch.zeros(n_atoms, dtype=edge_e.dtype, device=edge_e.device).index_add(
            0, centre, edge_e
        )
        atom_e = atom_e.to(self.default_dtype)
        if self.has_scales:
            atom_e = self.scales[atom_types] * atom_e
        if self.has_shifts:
            atom_e = self.shifts[atom_types] + atom_e
        return atom_e * self.global_scale

    def forward(self, data: dict) -> dict:
        """pair_allegro's call: ``pos`` (N, 3) A, ``edge_index`` (2, E), ``atom_types`` (N,) -> the dict with
        ``atomic_energy`` (N, 1) eV, ``forces`` (N, 3) eV/A and ``virial`` (1, 3, 3) eV added."""
        pos = data["pos"]
        edge_index = data["edge_index"]
        types = data["atom_types"].reshape(-1)
        p = pos.to(self.model_dtype)
        vec = p[edge_index[1]] - p[edge_index[0]]
        with torch.enable_grad():
            if not vec.requires_grad:
                vec.requires_grad_(True)
            atom_e = self.atomic_energies(vec, edge_index, types, pos.shape[0])
            (g,) = torch.autograd.grad([atom_e.sum()], [vec], create_graph=self.training)
        g = g.to(pos.dtype)
        forces = (
            torch.zeros_like(pos).index_add(0, edge_index[0], g).index_add(0, edge_index[1], -g)
        )
        virial = -(vec.detach().to(pos.dtype).T @ g)
        out = dict(data)
        out["atomic_energy"] = atom_e.to(pos.dtype).unsqueeze(-1)
        out["forces"] = forces
        out["virial"] = virial.reshape(1, 3, 3)
        return out


def port_legacy(path: str | Path, device: str = "cpu") -> Allegro030:
    """The plain-PyTorch port of a nequip 0.6.x / Allegro 0.3.0 deployed file on ``device`` (weights copied by
    name). LegacyPortError names the config key or module of anything it does not implement."""
    path = Path(path)
    with warnings.catch_warnings():  # e3nn / TorchScript deprecation notices
        warnings.simplefilter("ignore")
        module, meta = load_legacy_module(path, "cpu", freeze=False)
    cfg = read_config(meta["config"], path) if meta.get("config") else {}
    if not cfg:
        raise LegacyPortError(
            f"{path}: no stored training config (extra/config); the port needs it"
        )
    check_config(cfg, path)
    return Allegro030(module, meta, cfg, path).to(device).eval()


class PortedLegacyPotential(LegacyAllegroPotential):
    """The port run eagerly behind the engine's Potential call (same ``compute`` and metadata as
    ``LegacyAllegroPotential``, which runs the TorchScript original): for checks and fine-tuning."""

    def __init__(self, path: str | Path, device: str = "cpu"):
        super().__init__(path, device)
        self.model = port_legacy(path, device)

    def describe(self) -> str:
        """One line: as the TorchScript original's, marked as the port."""
        return super().describe() + " (plain-PyTorch port)"
