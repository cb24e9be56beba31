"""lora.finetune's pieces: Eq. 3 by hand and against transformers, the lr schedule, batching, plots."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from lora.finetune import data, plots
from lora.finetune.loss import SummedNLL, loss_denominator
from lora.finetune.schedule import lr_at

IGNORE = -100


class Fixed(torch.nn.Module):
    """A backbone returning the given tensor whatever the ids."""

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = out

    def forward(self, ids):
        return self.out


def FixedLogits(logits: torch.Tensor) -> torch.nn.Module:
    """A causal 'LM' whose logits are `logits` (identity lm_head), wrapped for the loss."""
    lm = torch.nn.Module()
    lm.model, lm.lm_head = Fixed(logits), torch.nn.Identity()
    return lm


def nll(lm, ids, labels, norm):
    return SummedNLL(lm, norm)(ids, labels)


def test_eq3_by_hand_token_and_sequence_norms():
    logits = torch.log(torch.tensor([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [1 / 3, 1 / 3, 1 / 3]],
                                     [[0.6, 0.2, 0.2], [0.3, 0.3, 0.4], [0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]]]))
    ids = torch.zeros(2, 4, dtype=torch.long)
    # Row 0: targets at positions 2, 3 (predicted from 1, 2); row 1: target at position 1 only.
    labels = torch.tensor([[IGNORE, IGNORE, 1, 2], [IGNORE, 0, IGNORE, IGNORE]])
    model = FixedLogits(logits)
    row0 = -(math.log(0.8) + math.log(0.6))  # P(x2=1 | x<2) = 0.8, P(x3=2 | x<3) = 0.6
    row1 = -math.log(0.6)  # P(x1=0 | x<1) = 0.6
    assert nll(model, ids, labels, "token").item() == pytest.approx(row0 + row1)
    assert nll(model, ids, labels, "sequence").item() == pytest.approx(row0 / 2 + row1 / 1)
    batch = [{"n_targets": 2}, {"n_targets": 1}]
    assert loss_denominator(batch, "token") == 3 and loss_denominator(batch, "sequence") == 2


def test_token_loss_equals_transformers_loss(tiny_hf_llama, tmp_path):
    from minillama import Llama

    hf = tiny_hf_llama(tmp_path / "hf")
    ours = Llama.from_pretrained(tmp_path / "hf").eval()
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 128, (3, 17), generator=gen)
    labels = ids.clone()
    labels[0, :5], labels[1, :9], labels[2, 12:] = IGNORE, IGNORE, IGNORE
    with torch.no_grad():
        expected = hf(input_ids=ids, labels=labels).loss  # HF: mean over all unmasked shifted targets
        n = (labels[:, 1:] != IGNORE).sum()
        got = nll(ours, ids, labels, "token") / n
    torch.testing.assert_close(got, expected)


def test_lr_schedule_warmup_then_cosine():
    def lr(step):
        return lr_at(step, 1e-3, warmup_steps=4, total_steps=14, min_lr_ratio=0.1)
    assert [lr(s) for s in range(4)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3])
    assert lr(4) == pytest.approx(1e-3)
    assert lr(9) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way: cos(pi/2) = 0
    assert lr(14) == pytest.approx(1e-4)
    assert all(lr(s) >= lr(s + 1) for s in range(4, 14))


def test_global_batches_cover_each_epoch_once_and_ranks_split_them():
    examples = [{"id": str(i), "input_ids": [1, 5], "labels": [IGNORE, 5], "n_targets": 1} for i in range(10)]
    batches = [data.global_batch(s, examples, 4, seed=7) for s in range(6)]
    assert [len(b) for b in batches] == [4, 4, 2, 4, 4, 2]
    for epoch in (batches[:3], batches[3:]):
        assert sorted(int(e["id"]) for b in epoch for e in b) == list(range(10))
    assert [e["id"] for e in batches[0]] != [e["id"] for e in batches[3]]
    r0 = data.rank_micro_batches(batches[2], 4, 1, rank=0, world_size=2)
    r1 = data.rank_micro_batches(batches[2], 4, 1, rank=1, world_size=2)
    # Every rank runs as many micro-batches (what DDP and FSDP collectives need); an empty one is a dummy.
    assert [len(m) for m in r0] == [1, 1] and len(r1) == 2 and all(m[0]["n_targets"] == 0 for m in r1)
    ids, labels = data.collate(r1[0])
    assert (labels == IGNORE).all()  # the dummy row of an empty rank adds exactly nothing
    logits = torch.randn(1, ids.shape[1], 5, requires_grad=True)
    assert nll(FixedLogits(logits), ids, labels, "token").item() == 0.0


def test_sequence_mean_matches_f_cross_entropy_per_row():
    logits = torch.randn(2, 6, 11)
    labels = torch.randint(0, 11, (2, 6))
    labels[0, :3] = IGNORE
    per_row = [F.cross_entropy(logits[i, :-1], labels[i, 1:], ignore_index=IGNORE) for i in range(2)]
    got = nll(FixedLogits(logits), labels, labels, "sequence")
    torch.testing.assert_close(got, per_row[0] + per_row[1])


def test_plot_leaves_the_caller_s_matplotlib_backend_alone(tmp_path):
    """train() draws loss.png; a notebook calling it must keep its inline backend (it used to become Agg)."""
    pytest.importorskip("matplotlib")
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"type": "train", "step": 1, "loss": 2.0}\n{"type": "val", "step": 1, "loss": 2.5}\n')
    code = ("import sys, matplotlib; matplotlib.use('svg'); from lora.finetune import plots; "
            "from pathlib import Path; print(plots.plot_loss(Path(sys.argv[1]), Path(sys.argv[2])), matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code, str(metrics), str(tmp_path / "loss.png")],
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["wrote", str(tmp_path / "loss.png"), "svg"], out.stderr
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_skipped(tmp_path, monkeypatch):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"type": "train", "step": 1, "loss": 2.0}\n{"type": "val", "step": 1, "loss": 2.5}\n')
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plots.plot_loss(metrics, tmp_path / "loss.png") == "figure skipped (matplotlib not installed)"
    assert not (tmp_path / "loss.png").exists()
    assert plots.smooth([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
