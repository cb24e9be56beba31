"""Activation checkpointing that trains: with `gradient_checkpointing_enable()` every LoRA A and B (and DoRA m) gets
the gradient it gets without, in float64, at initialisation (B = 0: B's gradient is non-zero, A's is zero, as the
maths says) and after an AdamW step (B != 0); each decoder layer really runs twice (forward, then recomputed).

A known failure elsewhere: checkpointing with the reentrant `torch.utils.checkpoint` on a model whose embeddings are
frozen cuts the graph (the checkpointed layer's input needs no gradient), so LoRA's B stays zero. minillama
checkpoints with `use_reentrant=False`; these tests would catch the other."""
from __future__ import annotations

import pytest
import torch

from lora import LoraConfig, apply_lora
from minillama import Llama, LlamaConfig

TINY = LlamaConfig(vocab_size=96, hidden_size=48, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=64)
TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _model(use_dora: bool, dropout: float) -> Llama:
    torch.manual_seed(0)
    model = Llama(TINY).to(torch.float64)
    torch.manual_seed(1)
    return apply_lora(model, LoraConfig(r=4, alpha=8, dropout=dropout, target_modules=TARGETS, use_dora=use_dora))


def _grads(model: Llama, ids: torch.Tensor, checkpointing: bool, seed: int = 5) -> dict[str, torch.Tensor]:
    """The gradients of one next-token loss (train mode; the same dropout masks through `seed`)."""
    model.gradient_checkpointing_enable(checkpointing)
    model.train()
    model.zero_grad(set_to_none=True)
    calls = []
    # a pre-hook: the recomputation stops early, once it has what backward needs, so a forward hook never fires
    hook = model.model.layers[1].register_forward_pre_hook(lambda *a: calls.append(1))
    torch.manual_seed(seed)
    logits = model(ids)  # [B, T, V]
    torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    hook.remove()
    assert len(calls) == (2 if checkpointing else 1)  # recomputed in backward only when checkpointing
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("use_dora", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_checkpointed_gradients_equal_the_plain_ones_at_init_and_after_a_step(use_dora, dropout):
    model = _model(use_dora, dropout)
    ids = torch.randint(1, TINY.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert len(trainable) == len(TARGETS) * TINY.num_hidden_layers * (3 if use_dora else 2)

    plain, ckpt = _grads(model, ids, False), _grads(model, ids, True)  # at initialisation: B = 0
    assert plain.keys() == ckpt.keys() == set(trainable)
    for name in trainable:
        torch.testing.assert_close(ckpt[name], plain[name], rtol=0, atol=1e-14, msg=name)
        if ".lora_A." in name:
            assert not ckpt[name].any(), name          # dL/dA = s B^T (...) = 0 while B = 0
        else:
            assert ckpt[name].abs().sum() > 0, name    # B (and m) learn from the first step on

    params = dict(model.named_parameters())
    for name in trainable:  # one AdamW step on the plain gradients, as training takes it
        params[name].grad = plain[name]
    torch.optim.AdamW([params[n] for n in trainable], lr=1e-2).step()
    assert all(layer.lora_B.weight.abs().sum() > 0 for layer in model.modules() if hasattr(layer, "lora_B"))

    plain, ckpt = _grads(model, ids, False), _grads(model, ids, True)  # B != 0 now: every A, B (and m) moves
    for name in trainable:
        assert ckpt[name].abs().sum() > 0, name
        torch.testing.assert_close(ckpt[name], plain[name], rtol=0, atol=1e-14, msg=name)


@pytest.mark.slow
def test_the_bench_measures_less_peak_memory_with_checkpointing():
    """bench/bench_activation_checkpointing.py on small shapes: the step's peak falls (ratio printed < 1)."""
    import subprocess
    import sys
    from pathlib import Path

    bench = Path(__file__).resolve().parents[1] / "bench" / "bench_activation_checkpointing.py"
    proc = subprocess.run([sys.executable, str(bench), "--device", "cpu", "--layers", "4", "--hidden", "128",
                           "--seq", "256"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ratio = float(proc.stdout.strip().splitlines()[-1].split()[-1])
    assert 0 < ratio < 0.7, proc.stdout
