"""Several processes (2 x gloo on CPU): DDP and FSDP2 equal one process (also with --packing), no hang when a
rank has nothing to validate, dropout masks differ across ranks, FSDP resume equals an uninterrupted FSDP run,
and sharded generation is byte-identical to one process."""
from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _train_util import adapter, metrics, torchrun, train_args
from medlora_scripts import train

pytestmark = pytest.mark.slow


def run_train(argv):
    return train.run(argv)


def assert_same_run(one, two, rtol=1e-4, atol=1e-6):
    a, b = adapter(one, "adapter_last"), adapter(two, "adapter_last")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=atol)
    m1, m2 = metrics(one), metrics(two)
    assert [(r["type"], r["step"]) for r in m1] == [(r["type"], r["step"]) for r in m2]
    for r1, r2 in zip(m1, m2):
        assert r1["loss"] == pytest.approx(r2["loss"], rel=rtol)


@pytest.fixture(scope="module")
def one_process(tiny_train, tmp_path_factory):
    """The reference: the same run in one process, without dropout (so ranks cannot differ by RNG)."""
    return run_train(train_args(tiny_train, tmp_path_factory.mktemp("one") / "run", "--lora-dropout", "0"))


def test_ddp_two_gloo_processes_equal_one_process(tiny_train, one_process, tmp_path):
    proc = torchrun("train.py", train_args(tiny_train, tmp_path / "two", "--lora-dropout", "0"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["resolved"]["world_size"] == 2
    assert_same_run(one_process, tmp_path / "two")


def test_ddp_with_packing_equals_one_padded_process(tiny_train, one_process, tmp_path):
    """--packing under DDP: each rank packs its micro-batches (no_sync on all but the last): the padded run."""
    proc = torchrun("train.py", train_args(tiny_train, tmp_path / "packed", "--lora-dropout", "0", "--packing",
                                          "--pack-row-tokens", "1000"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(one_process, tmp_path / "packed")


def test_fsdp_two_gloo_processes_equal_one_process(tiny_train, one_process, tmp_path):
    proc = torchrun("train.py", train_args(tiny_train, tmp_path / "fsdp", "--lora-dropout", "0", "--fsdp"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "fsdp" / "config.json").read_text())["fsdp"] is True
    assert_same_run(one_process, tmp_path / "fsdp")


def test_fsdp_with_packing_equals_one_padded_process(tiny_train, one_process, tmp_path):
    """--packing under FSDP2: the sharded loss module takes the packed rows' positions and segments too."""
    proc = torchrun("train.py", train_args(tiny_train, tmp_path / "packed", "--lora-dropout", "0", "--fsdp",
                                          "--packing", "--pack-row-tokens", "1000"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "packed" / "config.json").read_text())
    assert config["fsdp"] is True and config["packing"] is True
    assert_same_run(one_process, tmp_path / "packed")


def test_fsdp_interrupted_and_resumed_equals_uninterrupted(tiny_train, tmp_path):
    args = ("--lora-dropout", "0.1", "--fsdp")
    full = torchrun("train.py", train_args(tiny_train, tmp_path / "full", *args))
    assert full.returncode == 0, full.stderr[-3000:]
    part = torchrun("train.py", train_args(tiny_train, tmp_path / "part", *args, "--stop-after-steps", "3"))
    assert part.returncode == 0 and not (tmp_path / "part" / "DONE").exists(), part.stderr[-3000:]
    resumed = torchrun("train.py", ["--resume", "--out", str(tmp_path / "part")])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = adapter(tmp_path / "full", "adapter_last"), adapter(tmp_path / "part", "adapter_last")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert metrics(tmp_path / "full") == metrics(tmp_path / "part")


def test_validation_smaller_than_the_ranks_does_not_hang(tiny_train, tmp_path):
    """--val-size 1 with 2 ranks: rank 1 has nothing to validate and must not block rank 0 (DDP and FSDP)."""
    for extra in ((), ("--fsdp",)):
        out = tmp_path / f"val1{''.join(extra)}"
        proc = torchrun("train.py", train_args(tiny_train, out, "--val-size", "1", "--max-steps", "2", *extra),
                        timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert [r["type"] for r in metrics(out)].count("val") == 2  # before training and at the end


def _masks_worker(rank: int, world: int, port: int, queue) -> None:
    """What train.py does on each rank: seeded LoRA init, then the rank's own stream; report A and a mask."""
    from lora import LoraConfig, apply_lora
    from lora.finetune.distributed import DistInfo, seed_rank_stream

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = torch.nn.Sequential()
    model.add_module("q_proj", torch.nn.Linear(16, 16, bias=False))
    torch.manual_seed(42)
    apply_lora(model, LoraConfig(r=4, alpha=8, dropout=0.5, target_modules=("q_proj",)))
    seed_rank_stream(42, DistInfo(rank, world, rank, torch.device("cpu")))
    layer = model.q_proj
    layer.train()
    mask = layer.lora_dropout(torch.ones(64, 16)) != 0
    queue.put((rank, layer.lora_A.weight.detach().clone(), mask))
    dist.barrier()
    dist.destroy_process_group()


def test_dropout_masks_differ_across_ranks_while_lora_init_is_shared():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_masks_worker, args=(r, 2, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = dict((r, (a, m)) for r, a, m in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
    assert torch.equal(got[0][0], got[1][0])  # the same LoRA A on every rank
    assert not torch.equal(got[0][1], got[1][1])  # but each rank draws its own dropout masks


def test_sharded_generation_is_byte_identical_to_one_process(tiny_train, one_process, tmp_path):
    """The generation stage under torchrun: each rank its batches, merged in id order == one process."""
    from medlora_scripts import reproduce

    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"generation": {"max_new_tokens": 12, "batch_size": 3, "device": "cpu"},
                               "evalkit_args": ["--keep-truncated", "--bootstrap", "200", "--permutations", "200"]}))
    args = ["--config", str(cfg), "--skip-train", "--train-run", str(one_process)]
    assert reproduce.main([*args, "--run-dir", str(tmp_path / "one")]) == 0
    proc = torchrun("reproduce.py", [*args, "--run-dir", str(tmp_path / "two")])
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("base.jsonl", "finetuned.jsonl"):
        one, two = (tmp_path / d / "generations" / name for d in ("one", "two"))
        assert one.read_bytes() == two.read_bytes() and one.read_bytes().count(b"\n") == 8
    assert (tmp_path / "two" / "report.md").is_file()  # rank 0 went on to the report
