"""`Llama`: the Llama-2 decoder (Touvron et al. 2023) with Hugging Face's parameter names; with its config's
differences it is also the Llama-3.x (RoPE scaling, tied embeddings, 128k vocabulary) and the Mistral 7B
(sliding window) decoder: the weights have the same names and shapes."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .block import LlamaDecoderLayer
from .config import LlamaConfig
from .errors import MiniLlamaError
from .kv_cache import KVCache
from .masks import block_causal_mask, build_attention_mask, check_input_ids, positions_from_mask
from .rmsnorm import RMSNorm
from .rope import RotaryEmbedding, table_rows


class LlamaModel(nn.Module):
    """Embedding, decoder blocks and final norm (HF's `LlamaModel`, reachable as `Llama.model`).

    Args:
        config: Model hyper-parameters.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config.head_dim, table_rows(config.max_position_embeddings),
                                          config.rope_theta, scaling=config.rope_scaling)
        self.sliding_window = config.sliding_window
        self.gradient_checkpointing = False

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: list[KVCache] | None = None,
                start_pos: int = 0, segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Final hidden states of the new tokens (see `Llama.forward` for the arguments).

        `segment_ids` (training on packed rows, no cache): tokens attend only to earlier tokens with the same
        id (`masks.block_causal_mask`); give each example's `position_ids` too, restarting at 0.

        Shapes:
            input_ids: [B, T]; attention_mask: [B, start_pos + T]; position_ids: [B, T]; segment_ids: [B, T]
            returns: [B, T, d]
        """
        b, t = input_ids.shape
        if attention_mask is not None and t > 1 and bool(attention_mask.all()):
            attention_mask = None  # no padding: let SDPA take its (faster) causal path
        x = self.embed_tokens(input_ids)  # [B, T, d]
        if position_ids is None and attention_mask is not None:
            position_ids = positions_from_mask(attention_mask, start_pos, t, input_ids.device)  # [B, T]
        if attention_mask is not None:  # positions count real tokens: below the mask's length
            max_position = attention_mask.shape[1] - 1
        elif position_ids is not None:  # given by the caller (costs one device sync)
            max_position = int(position_ids.max())
        else:  # no padding: positions start_pos ... start_pos+T-1, a slice of the table
            max_position = start_pos + t - 1
        cos, sin = self.rotary_emb(position_ids, x.dtype, max_position=max_position, start=start_pos,
                                   length=t)  # [B or 1, 1, T, hd]
        mask = build_attention_mask(attention_mask, start_pos, t, input_ids.device,
                                    sliding_window=self.sliding_window)  # [B or 1, 1, T, S] or None
        if segment_ids is not None:
            block = block_causal_mask(segment_ids)  # [B, 1, T, T]
            mask = block if mask is None else mask & block
        for i, layer in enumerate(self.layers):
            layer_cache = cache[i] if cache is not None else None
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, cos, sin, mask, layer_cache, start_pos, use_reentrant=False)
            else:
                x = layer(x, cos, sin, mask, layer_cache, start_pos)
        return self.norm(x)


class Llama(nn.Module):
    """The Llama-2 / Llama-3 / Mistral causal language model (HF's `LlamaForCausalLM` and
    `MistralForCausalLM` maths and parameter names).

    Parameters: `model.embed_tokens.weight`, `model.layers.{i}.self_attn.{q,k,v,o}_proj.weight`,
    `model.layers.{i}.mlp.{gate,up,down}_proj.weight`, `model.layers.{i}.input_layernorm.weight`,
    `model.layers.{i}.post_attention_layernorm.weight`, `model.norm.weight`, `lm_head.weight`
    (the same tensor as the embedding when `config.tie_word_embeddings`).

    Args:
        config: Model hyper-parameters.
    """

    def __init__(self, config: LlamaConfig):
        if not isinstance(config, LlamaConfig):
            raise MiniLlamaError(f"Llama takes a LlamaConfig (or use Llama.from_pretrained(path)), got "
                                 f"{type(config).__name__}")
        super().__init__()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.tie_weights()

    def tie_weights(self) -> None:
        """Share the embedding with `lm_head` when the config says so (again after a state-dict assign)."""
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                position_ids: torch.Tensor | None = None, cache: list[KVCache] | None = None,
                start_pos: int = 0, logits_to_keep: int = 0) -> torch.Tensor:
        """Next-token logits.

        Args:
            input_ids: Token ids of the new positions.
            attention_mask: 1 for real tokens, 0 for padding, covering the cached positions too
                (left padding for generation, any padding for training). None = no padding.
            position_ids: Explicit positions (below the mask's length when a mask is given). By default
                `start_pos + arange(T)`, or with a mask the number of real tokens before each token, so
                left padding does not shift a row (transformers' forward uses arange unless given them;
                its `generate` derives them from the mask as we do).
            cache: Per-layer `KVCache` (see `kv_cache.make_cache`), updated in place.
            start_pos: Cache slot of the first new token.
            logits_to_keep: If > 0, only the logits of the last `logits_to_keep` positions are computed.

        Shapes:
            input_ids: [B, T]; attention_mask: [B, start_pos + T]
            returns: [B, T, vocab] (or [B, logits_to_keep, vocab]), in the weights' dtype
        """
        check_input_ids(input_ids, self.config.vocab_size)
        h = self.model(input_ids, attention_mask, position_ids, cache, start_pos)  # [B, T, d]
        if logits_to_keep > 0:
            h = h[:, -logits_to_keep:]  # [B, K, d]
        return self.lm_head(h)

    def gradient_checkpointing_enable(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward (saves memory when fine-tuning)."""
        self.model.gradient_checkpointing = enable

    @property
    def device(self) -> torch.device:
        return self.model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.embed_tokens.weight.dtype

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, dtype: torch.dtype | str | None = None,
                        device: torch.device | str | None = None, quantize: str | None = None,
                        double_quant: bool = True) -> "Llama":
        """Load a Hugging Face Llama checkpoint (local folder or Hub id), optionally straight into NF4
        (`quantize="nf4"`, QLoRA); see `load.load_pretrained`."""
        from .load import load_pretrained
        return load_pretrained(cls, path_or_id, dtype=dtype, device=device, quantize=quantize,
                               double_quant=double_quant)

    def save_pretrained(self, out_dir: str | Path, max_shard_size: int | str = "2GB") -> Path:
        """Write config.json + safetensors in Hugging Face's layout; see `save.save_pretrained`."""
        from .save import save_pretrained
        return save_pretrained(self, out_dir, max_shard_size=max_shard_size)

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, temperature: float = 0.0,
                 top_p: float = 1.0, top_k: int = 0, eos_id: int | Sequence[int] | None = 2,
                 attention_mask: torch.Tensor | None = None, seed: int | None = None, pad_id: int = 0,
                 on_token: Callable[[torch.Tensor], None] | None = None, cuda_graph: bool = False
                 ) -> torch.Tensor:
        """Prompt + new tokens; see `generate.generate` for the arguments."""
        from .generate import generate
        return generate(self, input_ids, max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
                        eos_id=eos_id, attention_mask=attention_mask, seed=seed, pad_id=pad_id,
                        on_token=on_token, cuda_graph=cuda_graph)
