"""The model zoo (workloads/models/*.yaml): published architectures that model-based jobs train.

Transformers carry the shape the performance model needs (layers, hidden, heads, ...); other networks
(`kind: cnn`, `unet`, `diffusion`) carry forward FLOPs per sample, so their runtime is FLOPs-based
(see simulator/perf/jobs.py). Every entry names the source of every figure in `sources`.
The zoo is the performance model's input (its validation against published runs and model jobs' runtimes
price zoo entries), so it lives in perf/.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from simulator.errors import CapsimError
from simulator.profiles import workloads_dir
from simulator.yaml_file import load_data_yaml, yaml_error

FLOPS_KINDS = ("cnn", "unet", "diffusion")
TRANSFORMER_FIELDS = ("name", "layers", "hidden", "heads", "kv_heads", "ffn", "mlp", "vocab", "seq_len",
                      "num_experts", "top_k", "tied_embeddings", "moe_ffn", "shared_experts", "first_dense_layers",
                      "moe_layers", "head_dim", "route_nodes", "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim",
                      "v_head_dim", "sliding_window", "global_every")
# Multi-head Latent Attention keys (simulator.perf.ModelSpec): each needs a source when it is set.
MLA_FIELDS = ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "v_head_dim")
# MoE shape keys beyond num_experts/top_k (simulator.perf.ModelSpec): each needs a source when it is set.
MOE_FIELDS = ("moe_ffn", "shared_experts", "first_dense_layers", "moe_layers", "route_nodes")
# Sliding-window attention keys (simulator.perf.ModelSpec): each needs a source when it is set.
WINDOW_FIELDS = ("sliding_window", "global_every")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    description: str = ""
    params: float = Field(gt=0, description="published parameter count (all experts)")
    sources: dict[str, str] = Field(min_length=1, description="figure -> paper or model card it comes from")

    @model_validator(mode="after")
    def _cited(self):
        missing = [k for k in self._figures() if k not in self.sources]
        if missing:
            raise ValueError(f"no source named for {', '.join(missing)} (add them under 'sources')")
        return self

    def _figures(self) -> list[str]:
        return ["params"]


class TransformerModel(_Model):
    kind: Literal["transformer"]
    layers: int = Field(ge=1)
    hidden: int = Field(ge=1)
    heads: int = Field(ge=1)
    kv_heads: int | None = Field(default=None, ge=1)
    ffn: int = Field(ge=1)
    mlp: Literal["gelu", "swiglu"]
    vocab: int = Field(ge=1)
    seq_len: int = Field(ge=1)
    num_experts: int = Field(default=1, ge=1)
    top_k: int = Field(default=1, ge=1)
    tied_embeddings: bool = Field(default=True, description="output head shares the input embedding matrix")
    moe_ffn: int | None = Field(default=None, ge=1, description="inner size of one routed/shared expert (default ffn)")
    shared_experts: int = Field(default=0, ge=0, description="always-on shared experts of moe_ffn (DeepSeekMoE)")
    first_dense_layers: int = Field(default=0, ge=0, description="leading dense layers with an ffn-wide MLP")
    moe_layers: int | None = Field(default=None, ge=1,
                                   description="MoE layers after the leading dense ones (default all; others interleaved)")
    active_params: float | None = Field(default=None, gt=0, description="published active count (MoE)")
    head_dim: int | None = Field(default=None, ge=1, description="width of one attention head (default hidden / heads)")
    route_nodes: int | None = Field(default=None, ge=1, description="node-limited routing: nodes one token may reach")
    q_lora_rank: int | None = Field(default=None, ge=1, description="MLA: query latent width (none: full-rank Q)")
    kv_lora_rank: int | None = Field(default=None, ge=1, description="MLA: key/value latent width (sets MLA)")
    qk_rope_head_dim: int | None = Field(default=None, ge=0, description="MLA: decoupled RoPE key width")
    v_head_dim: int | None = Field(default=None, ge=1, description="MLA: value head width (default head_dim)")
    sliding_window: int | None = Field(default=None, ge=1,
                                       description="sliding-window attention: keys a windowed layer attends to")
    global_every: int | None = Field(default=None, ge=1,
                                     description="every k-th layer full, the others windowed (default all windowed)")

    def _figures(self):
        shape = ["layers", "hidden", "heads", "ffn", "vocab", "seq_len"]
        shape += [k for k in ("kv_heads", "active_params", "head_dim") if getattr(self, k) is not None]
        shape += [] if self.tied_embeddings else ["tied_embeddings"]
        moe = [k for k in MOE_FIELDS if getattr(self, k) not in (None, 0)]
        mla = [k for k in MLA_FIELDS if getattr(self, k) is not None]
        window = [k for k in WINDOW_FIELDS if getattr(self, k) is not None]
        return (super()._figures() + shape + (["num_experts", "top_k"] if self.num_experts > 1 else []) + moe + mla
                + window)

    def model_spec(self):
        """The performance model's ModelSpec of this architecture."""
        from simulator.perf import ModelSpec

        return ModelSpec(**{k: getattr(self, k) for k in TRANSFORMER_FIELDS})


class FlopsModel(_Model):
    """A network timed by its FLOPs: training one sample costs 3 x the forward FLOPs (forward + backward)."""

    kind: Literal["cnn", "unet", "diffusion"]
    fwd_flops_per_sample: float = Field(gt=0)
    sample: str = Field(description="what one sample is, e.g. '224x224 image'")
    efficiency: float = Field(default=0.4, gt=0, le=1,
                              description="assumed share of the device's dense 16-bit peak achieved")

    def _figures(self):
        return super()._figures() + ["fwd_flops_per_sample", "efficiency"]


ZooModel = Annotated[TransformerModel | FlopsModel, Field(discriminator="kind")]


class _Entry(BaseModel):
    model: ZooModel


# Names model cards and tables give zoo entries whose spelling alone does not find them: Llama 3.1 and 3.3
# keep Llama 3's shapes (3.1 extends RoPE to 128K context, 3.3 is a retrained 70B: meta-llama config.json).
MODEL_ALIASES = {"llama3.1-8b": "llama3-8b", "llama3.1-70b": "llama3-70b", "llama3.1-405b": "llama3-405b",
                 "llama3.3-70b": "llama3-70b", "llama4-maverick-17b-128e": "llama4-maverick",
                 # MaxText model_type names (src/MaxText/configs/models/llama4-17b-128e.yml, llama4-17b-16e.yml,
                 # deepseek3-671b.yml)
                 "llama4-17b-128e": "llama4-maverick", "llama4-17b-16e": "llama4-scout",
                 "deepseek3-671b": "deepseek-v3"}
# Trailing words of a checkpoint's name that do not change its shape ("-hf", "-Instruct", "-v0.1").
CHECKPOINT_WORDS = frozenset({"hf", "instruct", "chat", "base", "it", "fp8", "bf16"})


def _name_key(name: str) -> str:
    """A model name as tables, model cards and Hugging Face ids spell it, reduced to compare: lower case,
    the organisation ("meta-llama/") and a checkpoint's trailing words off, separators dropped."""
    words = [w for w in re.split(r"[\s_-]+", name.strip().lower().rsplit("/", 1)[-1]) if w]
    while len(words) > 1 and (words[-1] in CHECKPOINT_WORDS or re.fullmatch(r"v\d+\.\d+", words[-1])):
        words.pop()
    return "".join(words).removeprefix("meta")  # "Meta-Llama-3-8B"


def resolve_model_name(name: str) -> str:
    """The zoo entry a spelled model name stands for ("Llama-3.1-70B-Instruct", "meta-llama/Llama-2-7b-hf",
    "DeepSeek-V3", "Mixtral-8x7B-v0.1"); the name unchanged when none does."""
    key = _name_key(name)
    for entry in [*list_models(), *MODEL_ALIASES]:
        if _name_key(entry) == key:
            return MODEL_ALIASES.get(entry, entry)
    return name


def models_dir() -> Path:
    return workloads_dir() / "models"


def list_models() -> list[str]:
    return sorted(p.stem for p in models_dir().glob("*.yaml"))


@cache
def load_model(name: str) -> TransformerModel | FlopsModel:
    """A zoo entry by name (file stem in workloads/models/) or by path to a model YAML."""
    path = Path(name) if name.endswith((".yaml", ".yml")) else models_dir() / f"{resolve_model_name(name)}.yaml"
    if not path.is_file():
        raise CapsimError(f"unknown model {name!r}; the zoo has: {', '.join(list_models()) or 'none'}")
    try:
        data = load_data_yaml(path.read_text())
    except yaml.YAMLError as exc:
        raise yaml_error(exc, str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CapsimError(f"cannot read the model file: {exc}", source=str(path)) from None
    try:
        model = _Entry(model=data).model
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:] if p not in ("transformer", *FLOPS_KINDS)) or None
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")
        raise CapsimError(msg, source=str(path), where=where) from None
    if isinstance(model, TransformerModel):  # the shape must make a valid ModelSpec (MoE keys need experts, ...)
        try:
            model.model_spec()
        except CapsimError as exc:
            where = exc.where.removeprefix("--").replace("-", "_") if exc.where else None
            raise CapsimError(exc.detail, source=str(path), where=where) from None
    return model
