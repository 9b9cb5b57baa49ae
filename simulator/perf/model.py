"""The transformer being trained: shape, parameter count and FLOP count."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from simulator.errors import CapsimError

MLPS = ("gelu", "swiglu")


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer. kv_heads < heads is GQA; num_experts > 1 is an MoE FFN (top_k routed)."""

    name: str = "model"
    layers: int = 24
    hidden: int = 2048
    heads: int = 16
    kv_heads: int | None = None
    ffn: int | None = None
    mlp: str = "gelu"
    vocab: int = 51200
    seq_len: int = 2048
    num_experts: int = 1
    top_k: int = 1
    # The input embedding and the output head share one vocab x hidden matrix (GPT-2, Gemma); False
    # stores two (Llama 2/3: tie_word_embeddings false in their config.json). FLOPs and training
    # memory count one matrix either way; total_params() and serving weights count both when untied.
    tied_embeddings: bool = True

    def __post_init__(self):
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.ffn is None:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        for key in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "seq_len", "num_experts", "top_k"):
            if int(getattr(self, key)) < 1:
                raise CapsimError(f"must be a positive integer, got {getattr(self, key)!r}", where=f"--{key.replace('_', '-')}")
        if self.hidden % self.heads:
            raise CapsimError(f"hidden {self.hidden} is not divisible by heads {self.heads}", where="--heads")
        if self.heads % self.kv_heads:
            raise CapsimError(f"heads {self.heads} is not divisible by kv-heads {self.kv_heads}", where="--kv-heads")
        if self.mlp not in MLPS:
            raise CapsimError(f"unknown MLP {self.mlp!r}; expected one of {', '.join(MLPS)}", where="--mlp")
        if self.top_k > self.num_experts:
            raise CapsimError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}", where="top_k")

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise CapsimError(f"unknown model keys {sorted(unknown)}; expected {sorted(known)}", where="model")
        return cls(**data)

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.mlp == "swiglu" else 2

    # ---- parameters -------------------------------------------------------------------------
    def attn_params(self) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        return h * (h + 2 * kv) + h * h  # QKV + output projection (biases are negligible)

    def expert_params(self) -> int:
        return self.mlp_matrices * self.hidden * self.ffn

    def layer_params(self) -> int:
        """All parameters of one layer (every expert counted), plus two norms."""
        return self.attn_params() + self.num_experts * self.expert_params() + 4 * self.hidden

    def active_layer_params(self) -> int:
        """Parameters one token touches (top_k experts): what the 6*N*T FLOP rule counts."""
        return self.attn_params() + self.top_k * self.expert_params() + 4 * self.hidden

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def embedding_matrices(self) -> int:
        """vocab x hidden matrices stored: 1 when the output head is tied to the input embedding, else 2."""
        return 1 if self.tied_embeddings else 2

    def total_params(self) -> int:
        """Layers plus the vocab x hidden matrices: one when tied, input embedding and output head when not."""
        return self.layers * self.layer_params() + self.embedding_matrices() * self.embedding_params()

    def active_params(self) -> int:
        return self.layers * self.active_layer_params() + self.embedding_params()

    # ---- FLOPs ------------------------------------------------------------------------------
    def attention_flops_per_seq(self) -> float:
        """Forward+backward score and value matmuls, full s x s (PaLM / Megatron convention): 12*L*h*s^2."""
        return 12.0 * self.layers * self.hidden * self.seq_len**2

    def training_flops_per_seq(self) -> float:
        """Model FLOPs of one sequence: 6*N*s + attention (no recompute counted)."""
        return 6.0 * self.active_params() * self.seq_len + self.attention_flops_per_seq()
