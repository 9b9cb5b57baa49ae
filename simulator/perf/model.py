"""The transformer being trained: shape, parameter count and FLOP count."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from simulator.errors import CapsimError

MLPS = ("gelu", "swiglu")


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer. kv_heads < heads is GQA; num_experts > 1 is an MoE FFN (top_k routed).

    MoE shape (the defaults leave a dense model exactly as before):
    moe_ffn is the inner size of one routed (and one shared) expert, default ffn; shared_experts always-on
    experts of that size run on every token (DeepSeekMoE); the first `first_dense_layers` layers are dense
    with an ffn-wide MLP (DeepSeek-V3: 3, `first_k_dense_replace`); `moe_layers` of the remaining layers
    are MoE, default all of them, the others dense and interleaved (Llama 4 Maverick: every other layer)."""

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
    moe_ffn: int | None = None
    shared_experts: int = 0
    first_dense_layers: int = 0
    moe_layers: int | None = None
    # Node-limited routing (DeepSeek-V3: each token's experts lie on at most 4 nodes): the scale-up domains
    # one token's routed copies may reach; None = any.
    route_nodes: int | None = None
    # Width of one attention head; default hidden / heads. Set where the attention width heads * head_dim
    # differs from the hidden size (Qwen3: 64 heads of 128 on a 4096-wide model; Gemma; GPT-OSS).
    # With MLA it is the no-RoPE part of a query/key head (qk_nope_head_dim in config.json).
    head_dim: int | None = None
    # Multi-head Latent Attention (DeepSeek-V2, arXiv 2405.04434 sec. 2.1; DeepSeek-V3, arXiv 2412.19437
    # sec. 2.1.1), set by kv_lora_rank (None = not MLA): keys and values are up-projected per head from a
    # kv_lora_rank-wide latent, plus one qk_rope_head_dim-wide RoPE key shared by all heads; queries from a
    # q_lora_rank-wide latent (None = a full-rank projection, DeepSeek-V2-Lite). A query/key head is
    # head_dim + qk_rope_head_dim wide, a value head v_head_dim (default head_dim). DeepSeek-V3 (HF
    # config.json): q_lora_rank 1536, kv_lora_rank 512, qk_nope_head_dim 128, qk_rope_head_dim 64,
    # v_head_dim 128.
    q_lora_rank: int | None = None
    kv_lora_rank: int | None = None
    qk_rope_head_dim: int | None = None
    v_head_dim: int | None = None
    # Sliding-window (local) attention, set by sliding_window (None = full causal attention on every layer):
    # a windowed layer's query attends to at most `sliding_window` keys, itself and the ones before it
    # (HF config.json `sliding_window`; Mistral 7B, arXiv 2310.06825 sec. 2: W = 4096). global_every = k
    # makes every k-th layer (layer indices k-1, 2k-1, ...) full ("global") and the others windowed, as
    # HF's Gemma 3 config counts it (`sliding_window_pattern` 6: layer i is global when (i + 1) % 6 == 0)
    # and as the `layer_types` lists of Gemma 2 and GPT-OSS read (sliding, full, sliding, ...: k = 2);
    # None = every layer windowed (Mistral 7B v0.1). GPT-OSS's attention sinks (one learned logit per
    # head added to the softmax denominator) cost nothing measurable and are not a field.
    sliding_window: int | None = None
    global_every: int | None = None

    def __post_init__(self):
        if self.head_dim is None:
            if self.heads >= 1 and self.hidden % self.heads:
                raise CapsimError(f"hidden {self.hidden} is not divisible by heads {self.heads} (or give head_dim)",
                                  where="--heads")
            object.__setattr__(self, "head_dim", self.hidden // max(self.heads, 1))
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        if self.ffn is None:
            object.__setattr__(self, "ffn", 4 * self.hidden)
        for key in ("layers", "hidden", "heads", "kv_heads", "ffn", "vocab", "seq_len", "num_experts", "top_k",
                    "head_dim"):
            if int(getattr(self, key)) < 1:
                raise CapsimError(f"must be a positive integer, got {getattr(self, key)!r}", where=f"--{key.replace('_', '-')}")
        if self.heads % self.kv_heads:
            raise CapsimError(f"heads {self.heads} is not divisible by kv-heads {self.kv_heads}", where="--kv-heads")
        if self.mlp not in MLPS:
            raise CapsimError(f"unknown MLP {self.mlp!r}; expected one of {', '.join(MLPS)}", where="--mlp")
        if self.top_k > self.num_experts:
            raise CapsimError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}", where="top_k")
        self._check_moe()
        self._check_mla()
        self._check_window()

    def _check_window(self):
        """sliding_window and global_every are positive integers; global_every needs sliding_window."""
        for key in ("sliding_window", "global_every"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise CapsimError(f"must be a positive integer, got {value!r}", where=f"--{key.replace('_', '-')}")
        if self.global_every is not None and self.sliding_window is None:
            raise CapsimError("global_every needs a sliding_window (the windowed layers' span)", where="--global-every")

    def _check_mla(self):
        """The MLA keys need kv_lora_rank; they are positive, qk_rope_head_dim may be 0 (no decoupled
        RoPE key) and defaults to 0, v_head_dim defaults to head_dim. Every head has its own K and V."""
        keys = ("q_lora_rank", "qk_rope_head_dim", "v_head_dim")
        if not self.is_mla:
            for key in keys:
                if getattr(self, key) is not None:
                    raise CapsimError(f"{key} needs an MLA model (kv_lora_rank)", where=f"--{key.replace('_', '-')}")
            return
        if self.qk_rope_head_dim is None:
            object.__setattr__(self, "qk_rope_head_dim", 0)
        if self.v_head_dim is None:
            object.__setattr__(self, "v_head_dim", self.head_dim)
        for key, low in (("kv_lora_rank", 1), ("q_lora_rank", 1), ("qk_rope_head_dim", 0), ("v_head_dim", 1)):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
                kind = "positive" if low else "non-negative"
                raise CapsimError(f"must be a {kind} integer, got {value!r}", where=f"--{key.replace('_', '-')}")
        if self.kv_heads != self.heads:
            raise CapsimError(f"MLA up-projects a key and a value for every head: kv_heads {self.kv_heads} must "
                              f"equal heads {self.heads}", where="--kv-heads")

    def _check_moe(self):
        """The MoE-only keys need an MoE model; sizes are positive and the layer counts add up."""
        if not self.is_moe:
            for key, default in (("moe_ffn", None), ("shared_experts", 0), ("first_dense_layers", 0),
                                 ("moe_layers", None), ("route_nodes", None)):
                if getattr(self, key) != default:
                    raise CapsimError(f"{key} needs an MoE model (num_experts > 1)", where=f"--{key.replace('_', '-')}")
            return
        for key in ("moe_ffn", "route_nodes"):
            if getattr(self, key) is not None and int(getattr(self, key)) < 1:
                raise CapsimError(f"must be a positive integer, got {getattr(self, key)!r}",
                                  where=f"--{key.replace('_', '-')}")
        for key in ("shared_experts", "first_dense_layers"):
            if int(getattr(self, key)) < 0:
                raise CapsimError(f"must be a non-negative integer, got {getattr(self, key)!r}",
                                  where=f"--{key.replace('_', '-')}")
        rest = self.layers - self.first_dense_layers
        if rest < 1:
            raise CapsimError(f"first_dense_layers {self.first_dense_layers} leaves no MoE layer of {self.layers}",
                              where="--first-dense-layers")
        if not 1 <= self.n_moe_layers <= rest:
            raise CapsimError(f"moe_layers {self.moe_layers} must be between 1 and layers - first_dense_layers = {rest}",
                              where="--moe-layers")

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
    def is_moe(self) -> bool:
        return self.num_experts > 1

    @property
    def expert_ffn(self) -> int:
        """Inner size of one routed or shared expert: moe_ffn, else ffn."""
        return self.ffn if self.moe_ffn is None else self.moe_ffn

    @property
    def n_moe_layers(self) -> int:
        """MoE layers: moe_layers, else every layer after the first_dense_layers (0 for a dense model)."""
        if not self.is_moe:
            return 0
        return self.layers - self.first_dense_layers if self.moe_layers is None else self.moe_layers

    @property
    def n_dense_layers(self) -> int:
        """Layers with a dense ffn-wide MLP (all of them in a dense model)."""
        return self.layers - self.n_moe_layers

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    @property
    def attn_width(self) -> int:
        """Width of the query and output projections: heads * head_dim (= hidden unless head_dim is set).
        MHA/GQA only; MLA's widths are heads * qk_head_dim and heads * v_dim."""
        return self.heads * self.head_dim

    @property
    def qk_head_dim(self) -> int:
        """Width of one query/key head: head_dim, plus the decoupled RoPE part with MLA (128 + 64 = 192)."""
        return self.head_dim + self.qk_rope_head_dim if self.is_mla else self.head_dim

    @property
    def v_dim(self) -> int:
        """Width of one value head: head_dim, v_head_dim with MLA."""
        return self.v_head_dim if self.is_mla else self.head_dim

    @property
    def attn_core_dim(self) -> float:
        """The head width at which attention's two matmuls cost what QK^T at qk_head_dim and PV at v_dim do:
        their mean, (192 + 128) / 2 = 160 for DeepSeek-V3; head_dim without MLA."""
        return (self.qk_head_dim + self.v_dim) / 2 if self.is_mla else self.head_dim

    @property
    def attn_core_width(self) -> float:
        """heads * attn_core_dim: attn_width without MLA."""
        return self.heads * self.attn_core_dim

    def kv_latent_width(self) -> int:
        """Elements MLA caches per token and layer, shared by all heads: kv_lora_rank + qk_rope_head_dim
        (512 + 64 = 576, DeepSeek-V2 sec. 2.1.2-2.1.3)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def attn_proj_shapes(self, tokens: float, tp: int, down_tokens: float | None = None) -> list[tuple]:
        """(m, n, k) of the attention projection GEMMs on one of tp ranks, `tokens` rows (training, prefill).

        MHA/GQA: the fused QKV projection and the output projection, column- and row-split over TP.
        MLA as Megatron-Core runs it (multi_latent_attention.py, gpt_layer_specs.py): the down projections
        linear_q_down_proj (hidden -> q_lora_rank) and linear_kv_down_proj (hidden -> kv_lora_rank +
        qk_rope_head_dim) are plain duplicated linears, whole on every TP rank, over `down_tokens` rows
        (tokens / tp with sequence parallelism, else all of them); the up projections linear_q_up_proj
        (-> heads * qk_head_dim; linear_q_proj from hidden without q_lora_rank) and linear_kv_up_proj
        (kv_lora_rank -> heads * (head_dim + v_head_dim)) are column-parallel, linear_proj (heads *
        v_head_dim -> hidden) row-parallel."""
        h = self.hidden
        if not self.is_mla:
            qkv_n = (self.attn_width + 2 * self.kv_heads * self.head_dim) / tp
            return [(tokens, qkv_n, h), (tokens, h, self.attn_width / tp)]
        down = tokens if down_tokens is None else down_tokens
        shapes = [(down, self.kv_latent_width(), h)]
        if self.q_lora_rank:
            shapes.append((down, self.q_lora_rank, h))
        return shapes + [(tokens, self.heads * self.qk_head_dim / tp, self.q_lora_rank or h),
                         (tokens, self.heads * (self.head_dim + self.v_dim) / tp, self.kv_lora_rank),
                         (tokens, h, self.heads * self.v_dim / tp)]

    # ---- sliding-window attention ------------------------------------------------------------
    @property
    def is_windowed(self) -> bool:
        return self.sliding_window is not None

    def windowed_layers(self) -> int:
        """Layers with sliding-window attention: all of them without global_every, else all but the
        layers // global_every full ones (Gemma 3 27B: 62 - 10 = 52); 0 without a window."""
        if self.sliding_window is None:
            return 0
        if self.global_every is None:
            return self.layers
        return self.layers - self.layers // self.global_every

    def full_layers(self) -> int:
        """Layers with full (global) causal attention."""
        return self.layers - self.windowed_layers()

    def kv_span(self, layer_kind: str, context: float) -> float:
        """Keys one query of a `layer_kind` ("full" or "windowed") layer attends to, and the tokens its KV
        cache holds, at `context` tokens: context, or min(sliding_window, context) on a windowed layer."""
        if layer_kind == "full" or self.sliding_window is None:
            return context
        if layer_kind != "windowed":
            raise ValueError(f"layer_kind must be 'full' or 'windowed', got {layer_kind!r}")
        return min(float(self.sliding_window), context)

    def kv_tokens_all_layers(self, context: float) -> float:
        """Sum over the layers of the tokens each layer's KV cache holds at `context` tokens."""
        return self.full_layers() * context + self.windowed_layers() * self.kv_span("windowed", context)

    @property
    def mlp_matrices(self) -> int:
        return 3 if self.mlp == "swiglu" else 2

    # ---- parameters -------------------------------------------------------------------------
    def attn_params(self) -> int:
        """QKV + output projection (biases are negligible); with MLA the weights of attn_proj_shapes plus the
        RMSNorms on the two latents (DeepSeek-V3: 187,107,328 a layer)."""
        if self.is_mla:
            norms = self.kv_lora_rank + (self.q_lora_rank or 0)
            return sum(int(n * k) for _, n, k in self.attn_proj_shapes(1, 1)) + norms
        h, q, kv = self.hidden, self.attn_width, self.kv_heads * self.head_dim
        return h * (q + 2 * kv) + q * h

    def expert_params(self) -> int:
        """One routed (or shared) expert: an MLP of inner size moe_ffn (= ffn unless set)."""
        return self.mlp_matrices * self.hidden * self.expert_ffn

    def router_params(self) -> int:
        """The router (gate) of one MoE layer: a hidden x num_experts matrix (0 for a dense model)."""
        return self.hidden * self.num_experts if self.is_moe else 0

    def dense_layer_params(self) -> int:
        """One dense layer: attention, an ffn-wide MLP and two norms."""
        return self.attn_params() + self.mlp_matrices * self.hidden * self.ffn + 4 * self.hidden

    def layer_params(self) -> int:
        """One layer of the repeating kind (dense model: a dense layer; MoE: every routed and shared
        expert counted), plus two norms. The MoE router is router_params(), added in total_params()."""
        return self.attn_params() + (self.num_experts + self.shared_experts) * self.expert_params() + 4 * self.hidden

    def active_layer_params(self) -> int:
        """Parameters one token touches in that layer (top_k routed + the shared experts, router excluded):
        what the 6*N*T FLOP rule counts."""
        return self.attn_params() + (self.top_k + self.shared_experts) * self.expert_params() + 4 * self.hidden

    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    def embedding_matrices(self) -> int:
        """vocab x hidden matrices stored: 1 when the output head is tied to the input embedding, else 2."""
        return 1 if self.tied_embeddings else 2

    def total_params(self) -> int:
        """Dense layers, MoE layers (all experts, shared experts and the router) and the vocab x hidden
        matrices: one when the input embedding is tied to the output head, two when not."""
        emb = self.embedding_matrices() * self.embedding_params()
        if not self.is_moe:
            return self.layers * self.layer_params() + emb
        return (self.n_dense_layers * self.dense_layer_params()
                + self.n_moe_layers * (self.layer_params() + self.router_params()) + emb)

    def active_params(self) -> int:
        """Parameters one token touches (MFU convention): dense layers, top_k routed + shared experts and
        the router of each MoE layer, and the embedding."""
        if not self.is_moe:
            return self.layers * self.active_layer_params() + self.embedding_params()
        return (self.n_dense_layers * self.dense_layer_params()
                + self.n_moe_layers * (self.active_layer_params() + self.router_params()) + self.embedding_params())

    # ---- FLOPs ------------------------------------------------------------------------------
    def attention_flops_per_seq(self) -> float:
        """Forward+backward score and value matmuls, full s x s (PaLM / Megatron convention): 12*L*h*s^2,
        with h the attention width (heads * head_dim). That is 6*L*s^2*(h_qk + h_v); with MLA h_qk =
        heads * qk_head_dim and h_v = heads * v_head_dim, so h = attn_core_width, their mean.

        A windowed layer scores each query against at most w keys: 12*h*s*min(w, s), the band counted the
        same way, every query at its full span (MaxText's calculate_gemma2_tflops_training_per_device counts
        local attention as 4*b*s*min(w, s)*heads*head_dim against 4*b*s^2*heads*head_dim global, before
        halving both for causality; this 6n_attn convention halves neither). Equal to the full count when
        w >= s."""
        s = self.seq_len
        if self.sliding_window is None:
            return 12.0 * self.layers * self.attn_core_width * s**2
        return 12.0 * self.attn_core_width * s * self.kv_tokens_all_layers(s)  # keys summed over layers

    def decode_attention_flops(self, context: float) -> float:
        """Attention FLOPs of one new token against `context` cached ones, one layer, all heads. MHA/GQA:
        QK^T and PV at head_dim, 4*ctx*head_dim a head. MLA with the up projections absorbed into the query
        and the output (DeepSeek-V2 sec. 2.1.2; FlashMLA, vLLM's and SGLang's MLA backends): every head
        scores against the latent and its RoPE key, 2*ctx*(kv_lora_rank + qk_rope_head_dim), and sums the
        latents, 2*ctx*kv_lora_rank."""
        if self.is_mla:
            return self.heads * (2.0 * context * self.kv_latent_width() + 2.0 * context * self.kv_lora_rank)
        return self.heads * 4.0 * context * self.head_dim

    def training_flops_per_seq(self) -> float:
        """Model FLOPs of one sequence: 6*N*s + attention (no recompute counted)."""
        return 6.0 * self.active_params() * self.seq_len + self.attention_flops_per_seq()
