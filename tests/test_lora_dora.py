"""DoRA (Liu et al. 2024) against PEFT's `use_dora=True` on tiny random Llama-2, Llama-3 and Mistral bases, in float64:
adapters both ways with the same full logits, the gradients of A, B and m, merge, QDoRA on the NF4 base, bad adapters.

Our layers are compared on the transformers model itself (stack "hf"), so that only the adapter differs and float64's
default tolerance holds, and on minillama (stack "minillama") with float32's: transformers builds its RoPE cos/sin in
float32 even for a float64 model, minillama in float64, which alone moves the logits by ~1e-7."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from _lora_util import input_ids, logits
from conftest import make_tiny_hf_llama
from test_minillama_llama3 import make_tiny_hf_llama3
from test_minillama_mistral import make_tiny_hf_mistral

import lora
from lora import DoRALinear, LoraConfig, LoraError, apply_lora, load_adapter, lora_layers, merge_lora, save_adapter
from minillama import Llama

peft = pytest.importorskip("peft")
transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]
BASES = {"llama-2": make_tiny_hf_llama, "llama-3": make_tiny_hf_llama3, "mistral": make_tiny_hf_mistral}
CASES = [("llama-2", ATTN + MLP), ("llama-3", ["q_proj", "v_proj", "down_proj"]), ("mistral", ATTN + MLP)]


def _peft_dora(base_dir, targets, seed=7):
    """PEFT's DoRA on the float64 transformers model of `base_dir`, with B != 0 and m != ||W0 + s B A|| (so the
    magnitude matters), saved to `base_dir/../peft`; returns the PEFT model."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float64).eval()
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM",
                             init_lora_weights=False, use_dora=True)
    torch.manual_seed(seed)
    theirs = peft.get_peft_model(hf, config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if "lora_magnitude_vector" in name:
                p.mul_(1 + 0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    theirs.save_pretrained(str(base_dir.parent / "peft"))
    return theirs


def _ours(base_dir, adapter=None, stack="minillama"):
    """The float64 model of `base_dir` (minillama's Llama, or the transformers model with our layers for
    `stack="hf"`), with `adapter` loaded by `lora.load_adapter` when given."""
    if stack == "hf":
        model = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float64).eval()
    else:
        model = Llama.from_pretrained(base_dir, dtype=torch.float64).eval()
    return load_adapter(model, adapter) if adapter is not None else model


def _close(stack):
    """assert_close's tolerances for a stack (see the module docstring)."""
    return {} if stack == "hf" else {"rtol": 1.3e-6, "atol": 1e-5}


def _our_name(peft_name: str) -> str:
    """PEFT's in-memory parameter name -> ours: `base_model.model.X.lora_magnitude_vector.default.weight` ->
    `X.lora_magnitude_vector`, `...lora_A.default.weight` -> `...lora_A.weight`."""
    name = peft_name.replace("base_model.model.", "", 1).replace(".default", "")
    return name.removesuffix(".weight") if name.endswith(".lora_magnitude_vector.weight") else name


def _ids(vocab=128):
    return input_ids(batch=2, seq=12, vocab=vocab)


@pytest.mark.parametrize("stack", ["hf", "minillama"])
@pytest.mark.parametrize("which, targets", CASES)
def test_peft_dora_adapter_loads_in_ours_with_the_same_logits(tmp_path, which, targets, stack):
    BASES[which](tmp_path / "base")
    theirs = _peft_dora(tmp_path / "base", targets)
    ours = _ours(tmp_path / "base", tmp_path / "peft", stack)
    layers = lora_layers(ours)
    assert len(layers) == 2 * len(targets) and all(isinstance(m, DoRALinear) for _, m in layers)
    torch.testing.assert_close(logits(ours, _ids()), logits(theirs, _ids()), **_close(stack))
    assert not torch.allclose(logits(ours, _ids()), logits(_ours(tmp_path / "base", None, stack), _ids()))


@pytest.mark.parametrize("stack", ["hf", "minillama"])
@pytest.mark.parametrize("which, targets", CASES)
def test_our_dora_adapter_loads_in_peft_with_the_same_logits(tmp_path, which, targets, stack):
    BASES[which](tmp_path / "base")
    ours = apply_lora(_ours(tmp_path / "base", None, stack),
                      LoraConfig(r=4, alpha=8, dropout=0.05, target_modules=targets, use_dora=True))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in ours.named_parameters():
            if p.requires_grad:  # A, B and m all away from their initial values
                p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    save_adapter(ours, tmp_path / "adapter")
    saved = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())["use_dora"] is True
    m_keys = {k for k in saved if k.endswith(".lora_magnitude_vector")}
    assert len(m_keys) == 2 * len(targets) == len(saved) // 3
    assert saved[f"base_model.model.model.layers.0.self_attn.{targets[0]}.lora_magnitude_vector"].shape[0] == \
        dict(lora_layers(ours))[f"model.layers.0.self_attn.{targets[0]}"].out_features
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "base"), dtype=torch.float64)
    theirs = peft.PeftModel.from_pretrained(hf, str(tmp_path / "adapter")).eval()
    assert theirs.peft_config["default"].use_dora
    torch.testing.assert_close(logits(theirs, _ids()), logits(ours, _ids()), **_close(stack))


@pytest.mark.parametrize("which, targets", CASES)
def test_gradients_of_a_b_and_m_equal_peft(tmp_path, which, targets):
    """One backward of a cross-entropy loss, in train mode (dropout 0): every A, B and m gradient equals PEFT's."""
    BASES[which](tmp_path / "base")
    theirs = _peft_dora(tmp_path / "base", targets).train()
    ours = _ours(tmp_path / "base", tmp_path / "peft", "hf").train()
    ids = _ids()
    for model in (ours, theirs):
        out = model(input_ids=ids).logits
        torch.nn.functional.cross_entropy(out[:, :-1].reshape(-1, out.shape[-1]), ids[:, 1:].reshape(-1)).backward()
    theirs_grads = {_our_name(n): p.grad
                    for n, p in theirs.named_parameters() if p.requires_grad}
    ours_grads = {n: p.grad for n, p in ours.named_parameters() if p.requires_grad}
    assert ours_grads.keys() == theirs_grads.keys() and len(ours_grads) == 3 * 2 * len(targets)
    for name, grad in ours_grads.items():
        assert grad is not None and grad.abs().sum() > 0, name
        torch.testing.assert_close(grad, theirs_grads[name], msg=name)


def test_gradients_at_initialisation_reach_b_and_m(tmp_path):
    """At init (B = 0, m = ||W0||) the layer is the base; B and m still get PEFT's (non-zero) gradients, A none."""
    make_tiny_hf_llama(tmp_path / "base")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "base"), dtype=torch.float64)
    torch.manual_seed(0)
    theirs = peft.get_peft_model(hf, peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=ATTN,
                                                     use_dora=True)).train()
    theirs.save_pretrained(str(tmp_path / "peft"))
    ours = _ours(tmp_path / "base", tmp_path / "peft", "hf").train()
    ids = _ids()
    torch.testing.assert_close(logits(ours, ids), logits(_ours(tmp_path / "base", None, "hf"), ids))
    ours(ids).logits.sum().backward()
    theirs(input_ids=ids).logits.sum().backward()
    for name, p in theirs.named_parameters():
        if p.requires_grad:
            mine = dict(ours.named_parameters())[_our_name(name)]
            torch.testing.assert_close(mine.grad, p.grad, msg=name)
            assert (mine.grad.abs().sum() > 0) == (".lora_A." not in name), name  # B = 0 stops A's gradient


@pytest.mark.parametrize("which, targets", CASES)
def test_merge_equals_the_unmerged_forward_and_peft_merge(tmp_path, which, targets):
    BASES[which](tmp_path / "base")
    theirs = _peft_dora(tmp_path / "base", targets)
    ours = _ours(tmp_path / "base", tmp_path / "peft", "hf")
    ids = _ids()
    unmerged = logits(ours, ids)
    weights = {n: m.weight.clone() for n, m in lora_layers(ours)}
    merge_lora(ours, unload=False)
    torch.testing.assert_close(logits(ours, ids), unmerged)
    once = {n: m.weight.clone() for n, m in lora_layers(ours)}
    merge_lora(ours, unload=False)                                     # idempotent: a second merge changes nothing
    assert all(torch.equal(m.weight, once[n]) for n, m in lora_layers(ours))
    peft_merged = theirs.merge_and_unload().state_dict()
    for name, m in lora_layers(ours):
        torch.testing.assert_close(m.weight, peft_merged[name + ".weight"], msg=name)
        m.unmerge()
        torch.testing.assert_close(m.weight, weights[name], msg=name)  # W0 back, up to float64 roundings
    torch.testing.assert_close(logits(ours, ids), unmerged)
    exported = merge_lora(ours)                                        # plain nn.Linear layers again
    assert not lora_layers(exported)
    torch.testing.assert_close(logits(exported, ids), unmerged)


def test_qdora_on_the_nf4_base_equals_dora_on_the_dequantised_base(tmp_path):
    """QDoRA: m starts at the row norms of dequant(W0), the forward equals DoRA on the dense dequantised weights (the
    same A, B and m), merge materialises W' and unmerge is exact."""
    from minillama.nf4.convert import dequantize_model

    make_tiny_hf_llama(tmp_path / "base")
    config = LoraConfig(r=4, alpha=8, dropout=0.0, target_modules=ATTN + MLP, use_dora=True)
    torch.manual_seed(0)
    q = apply_lora(Llama.from_pretrained(tmp_path / "base", dtype=torch.float64, quantize="nf4").eval(), config)
    dense = dequantize_model(Llama.from_pretrained(tmp_path / "base", dtype=torch.float64, quantize="nf4")).eval()
    for name, layer in lora_layers(q):
        w0 = layer.base_layer.dequantize(torch.float64)
        torch.testing.assert_close(layer.lora_magnitude_vector, w0.norm(dim=1), msg=name)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in (p for p in q.parameters() if p.requires_grad):
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    save_adapter(q, tmp_path / "qdora")
    load_adapter(dense, tmp_path / "qdora")
    ids = _ids()
    expected = logits(dense, ids)
    torch.testing.assert_close(logits(q, ids), expected)
    merge_lora(q, unload=False)
    torch.testing.assert_close(logits(q, ids), expected)
    for _, layer in lora_layers(q):
        layer.unmerge()
        assert layer.weight is None
    torch.testing.assert_close(logits(q, ids), expected)


def test_dropout_runs_the_base_on_the_whole_input():
    """With dropout, PEFT's rule: y = W0 x + b + (m/n - 1) W0 x~ + (m/n) s B A x~; in eval mode y = W' x + b."""
    torch.manual_seed(0)
    layer = DoRALinear(torch.nn.Linear(16, 8, dtype=torch.float64), r=2, alpha=4, dropout=0.5)
    with torch.no_grad():
        layer.lora_B.weight.normal_()
        layer.lora_magnitude_vector.mul_(1.5)
    x = torch.randn(3, 16, dtype=torch.float64)
    w0, b, a, bb = layer.weight, layer.bias, layer.lora_A.weight, layer.lora_B.weight
    v = w0 + layer.scaling * bb @ a
    scale = layer.lora_magnitude_vector / v.norm(dim=1)
    w_prime = scale[:, None] * v                                       # Eq. 5, Liu et al. 2024
    torch.testing.assert_close(layer.eval()(x), x @ w_prime.T + b)
    layer.train()
    torch.manual_seed(5)
    y = layer(x)
    torch.manual_seed(5)
    x_drop = torch.nn.functional.dropout(x, 0.5)
    delta = layer.scaling * bb @ a                                     # s B A
    torch.testing.assert_close(y, x @ w0.T + b + (scale - 1) * (x_drop @ w0.T) + scale * (x_drop @ delta.T))


def test_count_includes_the_magnitudes():
    model = make_tiny_hf_llama()
    plain = lora.trainable_summary(apply_lora(make_tiny_hf_llama(), LoraConfig(r=4, target_modules=ATTN)))
    dora = lora.trainable_summary(apply_lora(model, LoraConfig(r=4, target_modules=ATTN, use_dora=True)))
    outs = sum(m.out_features for _, m in lora_layers(model))
    assert dora.trainable == plain.trainable + outs and dora.total == plain.total + outs


def test_bad_dora_adapters_are_refused_in_one_line_and_change_nothing(tmp_path):
    make_tiny_hf_llama(tmp_path / "base")
    _peft_dora(tmp_path / "base", ["q_proj"])
    path = tmp_path / "peft" / "adapter_model.safetensors"
    tensors = load_file(str(path))
    config = json.loads((tmp_path / "peft" / "adapter_config.json").read_text())

    def refused(folder, expect):
        model = _ours(tmp_path / "base")
        with pytest.raises(LoraError, match=expect) as err:
            load_adapter(model, folder)
        assert "\n" not in str(err.value) and not lora_layers(model)

    for name, files, cfg, expect in [
        ("no_m", {k: v for k, v in tensors.items() if "magnitude" not in k}, config, "lacks 2 of the 6 tensors"),
        ("not_dora", tensors, {**config, "use_dora": False}, "is a DoRA magnitude but adapter_config.json"),
        ("short_m", {k: (v[:-1] if "magnitude" in k else v) for k, v in tensors.items()}, config,
         r"lora_magnitude_vector has shape \[63\], this model needs \[64\]"),
    ]:
        (tmp_path / name).mkdir()
        save_file(files, str(tmp_path / name / "adapter_model.safetensors"))
        (tmp_path / name / "adapter_config.json").write_text(json.dumps(cfg))
        refused(tmp_path / name, expect)
    lora_model = apply_lora(_ours(tmp_path / "base"), LoraConfig(r=4, alpha=8, target_modules=["q_proj"]))
    with pytest.raises(LoraError, match="does not fit the model's LoRA layers"):
        load_adapter(lora_model, tmp_path / "peft")                    # a DoRA adapter into plain LoRA layers


def test_a_dora_training_run_writes_an_adapter_peft_loads_with_the_same_logits(tiny_train, tmp_path):
    """scripts/train.py --use-dora: A, B and m train; the best adapter (`use_dora: true`, magnitude keys) loads in
    PEFT on the transformers model with minillama's logits; a run stopped and resumed ends bitwise equal."""
    from _train_util import train_args
    from medlora_scripts import train

    base, _ = tiny_train
    flags = ("--use-dora", "--max-steps", "4", "--dtype", "float64")
    run = train.run(train_args(tiny_train, tmp_path / "run", *flags))
    assert json.loads((run / "config.json").read_text())["use_dora"] is True
    train.run(train_args(tiny_train, tmp_path / "split", *flags, "--stop-after-steps", "2"))
    split = train.run(train_args(tiny_train, tmp_path / "split", *flags, "--resume"))
    resumed = load_file(str(split / "adapter_last" / "adapter_model.safetensors"))
    saved = load_file(str(run / "adapter_last" / "adapter_model.safetensors"))
    assert saved.keys() == resumed.keys() and all(torch.equal(saved[k], resumed[k]) for k in saved)
    layers = lora_layers(apply_lora(Llama.from_pretrained(base, dtype=torch.float64),
                                    LoraConfig(target_modules=ATTN, use_dora=True)))
    for name, layer in layers:                                # every A, B and m moved off its initial value
        m = saved[f"base_model.model.{name}.lora_magnitude_vector"]
        assert not torch.allclose(m, layer.lora_magnitude_vector, rtol=0, atol=1e-7), name
        assert saved[f"base_model.model.{name}.lora_B.weight"].abs().sum() > 0, name
    ids = torch.randint(3, 200, (2, 10), generator=torch.Generator().manual_seed(0))
    ours = load_adapter(Llama.from_pretrained(base, dtype=torch.float64).eval(), run / "adapter_last")
    hf = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float64)
    theirs = peft.PeftModel.from_pretrained(hf, str(run / "adapter_last")).eval()
    assert theirs.peft_config["default"].use_dora
    torch.testing.assert_close(logits(ours, ids), logits(theirs, ids), **_close("minillama"))


def test_use_dora_with_a_target_it_cannot_wrap_is_one_line_and_writes_nothing(tiny_train, tmp_path, capsys):
    from _train_util import train_args
    from medlora_scripts import train

    out = tmp_path / "run"
    assert train.main(train_args(tiny_train, out, "--use-dora", "--lora-target-modules", "embed_tokens")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --lora-target-modules (with --use-dora): target module 'embed_tokens'")
    assert not out.exists()


def test_reproduce_takes_use_dora_among_its_training_arguments(tmp_path):
    from pipeline import preset
    from pipeline.stages import make_plan

    cfg = preset("demo")
    cfg.train.use_dora = True
    assert make_plan(cfg, tmp_path / "run").train.use_dora is True
    assert make_plan(preset("demo"), tmp_path / "run").train.use_dora is False
