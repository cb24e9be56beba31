"""One pre-norm Llama-2 decoder block: x + Attn(RMSNorm(x)), then h + MLP(RMSNorm(h))."""
from __future__ import annotations

import torch
from torch import nn

from .attention import LlamaAttention
from .config import LlamaConfig
from .kv_cache import KVCache
from .mlp import LlamaMLP
from .rmsnorm import RMSNorm


class LlamaDecoderLayer(nn.Module):
    """A decoder block with HF's module names (`self_attn`, `mlp`, `input_layernorm`, `post_attention_layernorm`).

    Args:
        config: Model hyper-parameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.self_attn = LlamaAttention(config.hidden_size, config.num_attention_heads,
                                        config.num_key_value_heads, config.head_dim)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size)
        self.input_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None, cache: KVCache | None = None, start_pos: int = 0
                ) -> torch.Tensor:
        """Shapes: x: [B, T, d] -> [B, T, d] (see `LlamaAttention.forward` for the others)."""
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, start_pos)
        return h + self.mlp(self.post_attention_layernorm(h))
