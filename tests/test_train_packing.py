"""Padding-free packing (`--packing`): the examples of a micro-batch share rows, attention stays inside each
example and positions restart, so losses, gradients and adapters equal the padded batch's (float64)."""
from __future__ import annotations

import pytest
import torch

from _train_util import adapter, metrics, train_args
from lora.finetune import data
from lora.finetune.loss import SummedNLL
from minillama import Llama, LlamaConfig

from medlora_scripts import train


def example(n: int, n_prompt: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 200, (n,), generator=g).tolist()
    labels = [data.IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    return {"input_ids": ids, "labels": labels, "n_targets": sum(t != data.IGNORE_INDEX for t in labels[1:])}


def tiny_model(seed: int = 0) -> Llama:
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=200, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=128)
    return Llama(cfg).double()


@pytest.mark.parametrize("lengths, capacity, rows", [
    ([5, 40, 3, 17, 2, 9], 64, 2),       # very different lengths
    ([10, 12, 8, 20], 64, 1),            # the whole micro-batch fills one row
    ([30, 30, 30], 30, 3),               # nothing fits beside anything: the padded batch, unpadded
    ([50, 7], 20, 2),                    # an example longer than the capacity gets a row of its own
])
@pytest.mark.parametrize("loss_norm", ["token", "sequence"])
def test_packed_micro_batch_has_the_padded_loss_and_gradients(lengths, capacity, rows, loss_norm):
    examples = [example(n, n_prompt=min(n - 1, 1 + i % 4), seed=i) for i, n in enumerate(lengths)]
    model = tiny_model()
    module = SummedNLL(model, loss_norm)
    results = []
    for packing in (False, True):
        model.zero_grad()
        tensors = data.micro_batch(examples, packing, capacity)
        loss = module(*tensors)
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in model.parameters()], tensors[0].shape))
    (padded, g_padded, shape_padded), (packed, g_packed, shape_packed) = results
    assert shape_padded == (len(lengths), max(lengths)) and shape_packed[0] == rows
    assert shape_packed[0] * shape_packed[1] <= shape_padded[0] * shape_padded[1]
    torch.testing.assert_close(packed, padded)
    for a, b in zip(g_packed, g_padded):
        torch.testing.assert_close(a, b)


def test_packed_rows_hold_each_example_whole_with_positions_from_zero():
    examples = [example(n, 2, seed=n) for n in (7, 3, 5, 2)]
    ids, labels, pos, seg = data.collate_packed(examples, capacity=10)
    assert ids.shape[0] == 2
    for i, e in enumerate(examples):
        r, cols = (seg == i).nonzero(as_tuple=True)
        assert len(set(r.tolist())) == 1 and cols.tolist() == list(range(cols[0], cols[0] + len(e["input_ids"])))
        assert ids[r, cols].tolist() == e["input_ids"] and pos[r, cols].tolist() == list(range(len(e["input_ids"])))
        assert labels[r, cols].tolist() == [data.IGNORE_INDEX] + e["labels"][1:]
    assert (labels[seg == -1] == data.IGNORE_INDEX).all()


@pytest.mark.parametrize("extra", [
    [],                                                       # 2 micro-batches per step (gradient accumulation)
    ["--micro-batch-size", "4", "--pack-row-tokens", "500"],   # rows of at most 500 tokens
    ["--micro-batch-size", "4", "--activation-checkpointing"],  # a whole step in one micro-batch
    ["--quantize", "nf4"],                                    # the 4-bit base
    ["--loss-norm", "sequence"],
])
def test_packed_run_equals_padded_run(tiny_train, tmp_path, monkeypatch, extra):
    """Per-step losses, validation losses and both adapters of a float64 run are those of the padded run
    (LoRA dropout off: its masks are drawn per tensor, so they would differ between the two layouts)."""
    common = ["--dtype", "float64", "--lora-dropout", "0", "--max-steps", "4", "--cutoff-len", "400", *extra]
    padded = train.run(train_args(tiny_train, tmp_path / "padded", *common))
    shapes, collate_packed = [], data.collate_packed
    monkeypatch.setattr(data, "collate_packed", lambda ex, cap: shapes.append(
        (len(ex), (t := collate_packed(ex, cap))[0].shape[0])) or t)
    packed = train.run(train_args(tiny_train, tmp_path / "packed", *common, "--packing"))
    assert any(rows < n for n, rows in shapes), shapes  # some examples did share a row
    rows_a, rows_b = metrics(padded), metrics(packed)
    assert [r["type"] for r in rows_a] == [r["type"] for r in rows_b] and len(rows_a) >= 6
    for a, b in zip(rows_a, rows_b):
        for key in ("loss", "grad_norm"):
            if key in a:
                torch.testing.assert_close(torch.tensor(b[key]), torch.tensor(a[key]), rtol=1e-10, atol=1e-12)
    for name in ("adapter_last", "adapter"):
        a, b = adapter(padded, name), adapter(packed, name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-10, atol=1e-12)


def test_a_model_without_a_block_mask_is_refused_in_one_line(tiny_train, tmp_path, monkeypatch, capsys):
    from minillama.model import LlamaModel

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, start_pos=0):
        raise AssertionError("never called")
    monkeypatch.setattr(LlamaModel, "forward", forward)
    assert train.main(train_args(tiny_train, tmp_path / "run", "--packing", "--max-steps", "1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --packing: the base") and not (tmp_path / "run").exists()
