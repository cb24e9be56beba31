"""A decoding step with static shapes, replayed as one CUDA graph per token on GPUs.

At batch 1 a 7B model's decoding step is a few milliseconds of GPU work but ~1,000 kernel launches; in
eager PyTorch the launches (Python + dispatcher overhead) dominate. Capturing the step once with
`torch.cuda.CUDAGraph` and replaying it turns those launches into one. That needs every shape and
address to stay fixed, so the step reads its inputs from fixed buffers (token, position, cache slot,
key mask), writes the cache with `index_copy_` at a slot given as a tensor, and attends over the whole
preallocated cache with a mask that hides the slots not yet written (and, with Mistral's sliding window,
the slots that fell out of the window).

On a CPU (or with `capture=False`) the same static step runs eagerly; the tests use that to prove it
computes exactly what the ordinary cached step computes.
"""
from __future__ import annotations

import warnings

import torch

from .sliding_window import slide


class StaticDecoder:
    """Runs the one-token decoding step of `model` over a full `cache`, optionally as a CUDA graph.

    Args:
        model: A `minillama.Llama`.
        cache: Its per-layer `KVCache`s, already holding the prompt (prefill done).
        key_mask: Which cache slots hold real tokens so far (prompt padding excluded).
        capture: Capture a CUDA graph (only on CUDA devices).

    Shapes:
        key_mask: [B, max_len] bool
    """

    def __init__(self, model, cache: list, key_mask: torch.Tensor, capture: bool = True):
        self.model, self.cache = model, cache
        b, max_len = key_mask.shape
        device = key_mask.device
        rope = model.model.rotary_emb
        if rope.cos_cached.shape[0] < max_len:
            rope.reset_cache(max_len)
        self.mask = key_mask.clone()[:, None, None, :]  # [B, 1, 1, max_len]
        self.window = model.config.sliding_window
        self.token = torch.zeros(b, 1, dtype=torch.long, device=device)  # [B, 1]
        self.position = torch.zeros(b, 1, dtype=torch.long, device=device)  # [B, 1]
        self.slot = torch.zeros(1, dtype=torch.long, device=device)  # [1]
        self.logits: torch.Tensor | None = None
        self.capture = capture and device.type == "cuda"
        self.graph: torch.cuda.CUDAGraph | None = None

    def _step(self) -> torch.Tensor:
        """The decoding step on the fixed buffers. Shapes: -> logits [B, vocab]."""
        m = self.model.model
        x = m.embed_tokens(self.token)  # [B, 1, d]
        cos, sin = m.rotary_emb(self.position, x.dtype)  # [B, 1, 1, hd]
        for layer, cache in zip(m.layers, self.cache):
            x = layer(x, cos, sin, self.mask, cache, self.slot)
        return self.model.lm_head(m.norm(x))[:, -1]  # [B, vocab]

    def _capture(self) -> None:
        """Warm up on a side stream (as CUDA graphs require), then record `_step` once. The warm-up runs
        write the same cache slot with the same values as the real step that follows, so they change nothing.
        """
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.logits = self._step()
        self.graph = graph

    @torch.no_grad()
    def step(self, token: torch.Tensor, position: torch.Tensor, slot: int) -> torch.Tensor:
        """Logits after feeding `token` at cache slot `slot` with rotary position `position`.

        Shapes:
            token: [B]; position: [B, 1] or [1, 1] -> logits [B, vocab] (a buffer overwritten next step)
        """
        self.token.copy_(token[:, None])
        self.position.copy_(position.expand_as(self.position))
        self.slot.fill_(slot)
        self.mask[:, :, :, slot] = True
        if self.window is not None:  # Mistral: keys at slots <= slot - W leave the window
            slide(self.mask, slot, self.window)
        if not self.capture:
            return self._step()
        if self.graph is None:
            try:
                self._capture()
            except RuntimeError as exc:  # e.g. an attention kernel that cannot be captured: stay eager
                warnings.warn(f"CUDA graph capture failed, decoding eagerly instead ({exc})", stacklevel=2)
                self.capture = False
                return self._step()
        self.graph.replay()
        return self.logits
