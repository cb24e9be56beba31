"""The training loss: Eq. 3 of the paper, the mean next-token cross-entropy over the target tokens, and the
validation loss (the same over the held-out pairs).

With `loss_norm="token"` (default) a step minimises sum(NLL of the target tokens of the global batch) /
(number of those tokens): Eq. 3 with T = the target tokens of the batch. It equals the per-sequence
Eq. 3 at batch 1 (the paper's setting) and does not depend on how the batch is cut into micro-batches
or ranks. `loss_norm="sequence"` averages the per-sequence Eq. 3 over the batch instead.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from lora.finetune.data import DUMMY_EXAMPLE, IGNORE_INDEX, micro_batch
from lora.finetune.distributed import all_reduce_sum


class SummedNLL(torch.nn.Module):
    """Eq. 3's numerator on a micro-batch, as one module around the causal LM (what DDP, FSDP and
    torch.compile wrap): the sum over sequences of (sum of target-token NLL) for "token", or of (mean
    target-token NLL of the sequence) for "sequence".

    The vocabulary projection runs only at positions that predict a target (the response tokens
    unless train_on_inputs), so the prompt never costs an lm_head matmul or a row of [.., vocab]
    logits. `lm` is any model with HF Llama's `.model` (backbone) and `.lm_head`.
    """

    def __init__(self, lm: torch.nn.Module, loss_norm: str = "token"):
        super().__init__()
        self.lm, self.loss_norm = lm, loss_norm

    def forward(self, ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor | None = None,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """`position_ids` and `segment_ids` come with packed rows (`data.collate_packed`): each segment is one
        example, and "sequence" averages over examples, not rows.

        Shapes: ids, labels, position_ids, segment_ids [B, T] -> scalar."""
        targets = F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)  # [B, T]: position t predicts t+1
        keep = targets != IGNORE_INDEX  # [B, T]
        if segment_ids is None:
            hidden = self.lm.model(ids)  # [B, T, d]
        else:
            hidden = self.lm.model(ids, position_ids=position_ids, segment_ids=segment_ids)  # [B, T, d]
        logits = self.lm.lm_head(hidden[keep])  # [N, V], N = target tokens of the micro-batch
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))  # at least float32 for the softmax
        nll = F.cross_entropy(logits, targets[keep], reduction="none")  # [N]: -log P(x_t | x_<t), Eq. 3
        if self.loss_norm == "token":
            return nll.sum()
        # the example of each target: its row, or its segment in a packed row
        seq = keep.nonzero()[:, 0] if segment_ids is None else segment_ids[keep]  # [N]
        size = ids.shape[0] if segment_ids is None else ids.numel()  # more than the examples of the micro-batch
        per_seq = torch.zeros(size, dtype=nll.dtype, device=nll.device).index_add_(0, seq, nll)
        count = torch.zeros(size, dtype=nll.dtype, device=nll.device).index_add_(0, seq, torch.ones_like(nll))
        return (per_seq / count.clamp(min=1)).sum()  # Eq. 3 per sequence, summed over the batch


def loss_denominator(batch: list[dict], loss_norm: str) -> int:
    """Target tokens ("token") or sequences ("sequence") of a global batch: what its loss is divided by."""
    return sum(e["n_targets"] for e in batch) if loss_norm == "token" else len(batch)


@torch.no_grad()
def validation_loss(loss_module: SummedNLL, examples: list[dict], cfg, info, autocast) -> float:
    """Eq. 3 over all held-out target tokens; every rank runs as many forwards (`DUMMY_EXAMPLE` pads its share)."""
    loss_module.eval()
    mine = examples[info.rank::info.world_size]
    n_batches = -(-len(examples) // (cfg.micro_batch_size * info.world_size))  # the same on every rank
    total = 0.0
    for i in range(n_batches):
        part = mine[i * cfg.micro_batch_size:(i + 1) * cfg.micro_batch_size] or [DUMMY_EXAMPLE]
        tensors = micro_batch(part, cfg.packing, cfg.pack_row_tokens or cfg.cutoff_len)  # ids, labels, ...
        with autocast():
            total += loss_module(*(t.to(info.device) for t in tensors)).item()
    total, denom = all_reduce_sum([total, loss_denominator(mine, cfg.loss_norm)], info)
    return total / max(denom, 1)
