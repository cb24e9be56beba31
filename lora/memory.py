"""Per-GPU memory of LoRA / QLoRA fine-tuning of a Llama, computed from its config alone.

Five parts, in bytes per GPU (`estimate`):

* weights: the frozen base in the compute dtype (2 bytes a value for bf16), or with `quantize="nf4"` every
  decoder linear layer in NF4 (`minillama.nf4.quantize.nf4_nbytes`: 4 bits a value plus the block constants),
  embeddings, norms and lm_head still 16-bit; plus the RoPE cos/sin tables (float32 buffers).
* LoRA parameters, their gradients, and AdamW's two moments (m, v): 4 + 4 + 8 bytes per trainable value
  (float32 A and B, and with DoRA the magnitude m; the per-parameter `step` counters live on the host).
* activations: the bytes autograd keeps for backward at the end of the forward pass (the definition of
  Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models", Sec. 4), for
  this repository's GPU recipe: bf16 base, float32 LoRA, bf16 autocast, SDPA flash/efficient attention
  (no T x T matrix is kept), CUDA dropout (1-byte masks). `layer_activation_bytes` lists every saved
  tensor; the count equals what PyTorch saves (tests/test_lora_memory.py measures it). With activation
  checkpointing each layer keeps only its input, and one layer is recomputed at a time during backward:
  L * N * d * 2 + one layer + head (Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost";
  Korthikanti et al. 2022, Sec. 4.2 "full activation recomputation").
* FSDP (`fsdp=True`): every parameter is sharded over the GPUs as FSDP2 does (dim 0 cut by `torch.chunk`,
  padded to the largest chunk), plus what is unsharded at once: the root's parameters (embeddings, final
  norm, lm_head; FSDP2 keeps the root unsharded between forward and backward) and two decoder layers (the
  one computing and the next one being all-gathered).

Not counted: the CUDA context and allocator slack (typically 0.3-1 GB), transient buffers inside backward
(the float32 gradient of the logits, N x vocab x 4 bytes), communication buffers of DDP.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from minillama.config import LlamaConfig
from minillama.rope import table_rows

from minillama.nf4.quantize import nf4_nbytes

BF16, FP32 = 2, 4  # bytes per value
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def projection_shapes(config: LlamaConfig) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of the seven linear layers of one decoder block, by HF name."""
    d, hd = config.hidden_size, config.head_dim
    q, kv, f = config.num_attention_heads * hd, config.num_key_value_heads * hd, config.intermediate_size
    return dict(zip(PROJECTIONS, [(d, q), (d, kv), (d, kv), (q, d), (d, f), (d, f), (f, d)]))


def lora_values(config: LlamaConfig, r: int, targets: tuple[str, ...], dora: bool = False) -> int:
    """Trainable values of LoRA: r * (in + out) per adapted projection, per layer (Hu et al. 2021, Sec. 4.1),
    plus with DoRA the magnitude's out values (Liu et al. 2024, Eq. 5)."""
    shapes = projection_shapes(config)
    return config.num_hidden_layers * sum(r * (shapes[t][0] + shapes[t][1]) + dora * shapes[t][1] for t in targets)


def layer_weight_bytes(config: LlamaConfig, quantize: str | None, double_quant: bool = True) -> int:
    """Bytes of one decoder block's frozen weights (7 projections + 2 RMSNorm weights)."""
    linear = sum(nf4_nbytes(i * o, double_quant) if quantize else i * o * BF16
                 for i, o in projection_shapes(config).values())
    return linear + 2 * config.hidden_size * BF16


def root_weight_bytes(config: LlamaConfig) -> int:
    """Bytes of the parameters outside the blocks: embedding, final norm, lm_head (unless tied), 16-bit."""
    embed = config.vocab_size * config.hidden_size
    return (embed * (1 if config.tie_word_embeddings else 2) + config.hidden_size) * BF16


def rope_bytes(config: LlamaConfig) -> int:
    """The float32 cos and sin tables, [rows, head_dim] each (buffers, not sharded): the rows a model starts with
    (`minillama.rope.table_rows`; they grow only for longer sequences)."""
    return 2 * table_rows(config.max_position_embeddings) * config.head_dim * FP32


def layer_activation_bytes(config: LlamaConfig, tokens: int, r: int, targets: tuple[str, ...],
                           dropout: bool = True, mask_bytes: int = 1, dora: bool = False) -> int:
    """Bytes one decoder block saves for backward (bf16 autocast, float32 LoRA), N = batch x sequence tokens.

    RMSNorm (x2): its float32 input N d 4 and 1/rms N 4.      Attention: q, k, v (k and v repeated to all H
    heads, as SDPA sees them) and the output, N H hd 2 each, and the float32 log-sum-exp N H 4.
    SwiGLU MLP: gate output, silu(gate) and up output, N f 2 each (the frozen projections' inputs are not
    kept: their weights need no gradient).   Each LoRA projection (in k, out n): its input cast to bf16 by
    autocast N k 2, A x N r 2, the bf16 copies of A and B (r k + n r) 2, and with dropout the mask N k
    `mask_bytes` (1 on CUDA; the CPU kernel keeps a float mask of the LoRA dtype, 4). DoRA adds, per projection,
    the bf16 `W0 x~` and `s B A x~` that m's gradient needs, N n 2 each, and the float32 `m / ||V||`,
    `m / ||V|| - 1` and `||V||`, n 4 each (`lora.dora.DoRALinear.forward`).
    """
    d, f, h, hd = config.hidden_size, config.intermediate_size, config.num_attention_heads, config.head_dim
    n = tokens
    norms = 2 * (n * d * FP32 + n * FP32)
    attention = 4 * n * h * hd * BF16 + n * h * FP32
    mlp = 3 * n * f * BF16
    shapes = projection_shapes(config)
    lora = 0
    for t in targets:
        k, out = shapes[t]
        lora += n * k * BF16 + n * r * BF16 + (r * k + out * r) * BF16 + (n * k * mask_bytes if dropout else 0)
        if dora:
            lora += 2 * n * out * BF16 + 3 * out * FP32
    return norms + attention + mlp + lora


def head_activation_bytes(config: LlamaConfig, batch: int, seq_len: int) -> int:
    """Bytes saved outside the blocks: the bf16 cos/sin of the sequence [1, 1, T, hd] (shared by all layers),
    the final RMSNorm (N d 4 + N 4), and the loss on every position, `F.cross_entropy(logits.float())`:
    its float32 log-softmax N V 4, the int64 targets N 8 and the float32 loss."""
    n = batch * seq_len
    return (2 * seq_len * config.head_dim * BF16 + n * config.hidden_size * FP32 + n * FP32
            + n * config.vocab_size * FP32 + n * 8 + FP32)


def fsdp_shard_bytes(shapes_and_sizes: list[tuple[tuple[int, ...], int]], gpus: int) -> int:
    """Per-GPU bytes of parameters sharded like FSDP2: dim 0 cut into `gpus` chunks (`torch.chunk`), each rank
    padded to the largest chunk. `shapes_and_sizes` lists (shape, bytes per value)."""
    total = 0
    for shape, size in shapes_and_sizes:
        rows = shape[0] if shape else 1
        total += math.ceil(rows / gpus) * (math.prod(shape[1:]) if shape else 1) * size
    return total


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per GPU of each part; `total` / `total_checkpointed` add them up (see the module docstring)."""

    weights: int
    lora_params: int
    lora_grads: int
    optimizer: int
    activations: int
    activations_checkpointed: int
    transient: int  # FSDP: unsharded root + two layers; NF4: the largest dequantised bf16 weight
    settings: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.weights + self.lora_params + self.lora_grads + self.optimizer + self.activations + self.transient

    @property
    def total_checkpointed(self) -> int:
        return self.total - self.activations + self.activations_checkpointed

    def to_json(self) -> dict:
        d = asdict(self)
        settings = d.pop("settings")
        return {**settings, "bytes": d, "total_bytes": self.total, "total_checkpointed_bytes": self.total_checkpointed}


def estimate(config: LlamaConfig, gpus: int = 1, fsdp: bool = False, quantize: str | None = None,
             r: int = 8, targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
             batch: int = 1, seq_len: int = 256, dropout: bool = True, double_quant: bool = True,
             dora: bool = False) -> MemoryEstimate:
    """Per-GPU memory of LoRA (or QLoRA with `quantize="nf4"`, DoRA with `dora`) on `gpus` GPUs, DDP or `fsdp`
    (not both: the NF4 base lives in buffers, which FSDP2 does not shard; `python -m lora memory` refuses it)."""
    L, n, shapes = config.num_hidden_layers, batch * seq_len, projection_shapes(config)
    layer_w = layer_weight_bytes(config, quantize, double_quant)
    weights = L * layer_w + root_weight_bytes(config) + rope_bytes(config)
    lora_params = lora_values(config, r, targets, dora) * FP32
    transient = 0
    if quantize:  # one dense bf16 copy of the largest quantised weight exists inside its matmul
        transient = max(i * o for i, o in shapes.values()) * BF16
    if fsdp:  # every parameter sharded; the rope tables are buffers (replicated)
        lora_shapes = [((r, shapes[t][0]), FP32) for t in targets] + [((shapes[t][1], r), FP32) for t in targets]
        lora_shapes += [((shapes[t][1],), FP32) for t in targets] if dora else []
        base_shapes = [((o, i), BF16) for i, o in shapes.values()] + [((config.hidden_size,), BF16)] * 2
        root_shapes = [((config.vocab_size, config.hidden_size), BF16)] * (1 if config.tie_word_embeddings else 2)
        root_shapes += [((config.hidden_size,), BF16)]
        weights = fsdp_shard_bytes(base_shapes * L + root_shapes, gpus) + rope_bytes(config)
        lora_params = fsdp_shard_bytes(lora_shapes * L, gpus)
        transient = root_weight_bytes(config) + 2 * (layer_w + lora_values(config, r, targets, dora) // L * FP32)
    layer_act = layer_activation_bytes(config, n, r, targets, dropout, dora=dora)
    head_act = head_activation_bytes(config, batch, seq_len)
    settings = {"gpus": gpus, "fsdp": fsdp, "quantize": quantize, "double_quant": bool(quantize and double_quant),
                "r": r, "target_modules": list(targets), "batch": batch, "seq_len": seq_len, "dropout": dropout,
                "dora": dora}
    return MemoryEstimate(
        weights=weights, lora_params=lora_params, lora_grads=lora_params, optimizer=2 * lora_params,
        activations=L * layer_act + head_act,
        activations_checkpointed=L * n * config.hidden_size * BF16 + layer_act + head_act,
        transient=transient, settings=settings)
