"""Bad checkpoints are refused with one line naming the file and the problem; loading is copy-free."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_tiny_hf_llama
from minillama import Llama, LlamaConfig, MiniLlamaError


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_folder(tmp_path):
    with pytest.raises(MiniLlamaError) as exc:
        Llama.from_pretrained(tmp_path / "nope")
    assert "model folder not found" in _one_line(exc)


def test_hub_id_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(MiniLlamaError) as exc:
        Llama.from_pretrained("no-such-owner/no-such-model")
    assert "Hugging Face Hub" in _one_line(exc)


def test_other_architecture(tmp_path):
    make_tiny_hf_llama(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(model_type="qwen2", architectures=["Qwen2ForCausalLM"])  # (Mistral is supported now)
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(MiniLlamaError) as exc:
        Llama.from_pretrained(tmp_path)
    assert "config.json" in _one_line(exc) and "Qwen2ForCausalLM" in str(exc.value)


@pytest.mark.parametrize("change, words", [
    ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "rope scaling 'linear'"),
    ({"rope_parameters": {"rope_type": "llama3", "rope_theta": 1e4}}, "rope_scaling.factor is missing"),
    ({"attention_bias": True}, "biases"),
    ({"hidden_act": "gelu"}, "gelu"),
])
def test_unsupported_config(change, words):
    d = LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                    num_attention_heads=2, num_key_value_heads=2, head_dim=4).to_hf_dict()
    with pytest.raises(MiniLlamaError, match=words):
        LlamaConfig.from_hf_dict({**d, **change})


def test_truncated_safetensors(tmp_path):
    make_tiny_hf_llama(tmp_path)
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    with pytest.raises(MiniLlamaError) as exc:
        Llama.from_pretrained(tmp_path)
    assert "model.safetensors: truncated" in _one_line(exc)


def test_truncated_shard_and_missing_shard(tmp_path):
    make_tiny_hf_llama(tmp_path, max_shard_size="30KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    shards[-1].write_bytes(shards[-1].read_bytes()[:20])
    with pytest.raises(MiniLlamaError, match=f"{shards[-1].name}: .*truncated"):
        Llama.from_pretrained(tmp_path)
    shards[-1].unlink()
    with pytest.raises(MiniLlamaError, match="is missing"):
        Llama.from_pretrained(tmp_path)


def test_shape_mismatch_missing_and_unexpected_all_named(tmp_path):
    make_tiny_hf_llama(tmp_path)
    f = tmp_path / "model.safetensors"
    sd = load_file(f)
    sd["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 64)
    sd["model.layers.1.self_attn.q_proj.weight"] = torch.zeros(64, 32)
    del sd["model.norm.weight"]
    sd["model.layers.0.extra.weight"] = torch.zeros(2)
    save_file(sd, f)
    with pytest.raises(MiniLlamaError) as exc:
        Llama.from_pretrained(tmp_path)
    msg = _one_line(exc)
    for name in ["model.layers.0.mlp.up_proj.weight [3, 64] != expected [112, 64]",
                 "model.layers.1.self_attn.q_proj.weight", "missing tensors: model.norm.weight",
                 "unexpected tensors: model.layers.0.extra.weight"]:
        assert name in msg


def test_bin_only_checkpoint_refused(tmp_path):
    make_tiny_hf_llama(tmp_path)
    (tmp_path / "model.safetensors").rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(MiniLlamaError) as exc:
        Llama.from_pretrained(tmp_path)
    msg = _one_line(exc)
    assert "pytorch_model.bin" in msg and "arbitrary code" in msg


def test_not_safetensors_and_bad_dtype(tmp_path):
    make_tiny_hf_llama(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(MiniLlamaError, match="truncated"):
        Llama.from_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_text("hello, this is not a safetensors file at all")
    with pytest.raises(MiniLlamaError, match="not a safetensors file"):
        Llama.from_pretrained(tmp_path)
    with pytest.raises(MiniLlamaError, match="dtype 'int8'"):
        Llama.from_pretrained(tmp_path, dtype="int8")


def test_save_refuses_foreign_parameters(tmp_path):
    model = Llama(LlamaConfig(vocab_size=10, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=2, head_dim=4))
    model.model.layers[0].self_attn.q_proj.lora_A = torch.nn.Linear(8, 2)
    with pytest.raises(MiniLlamaError, match="merge LoRA first"):
        model.save_pretrained(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(MiniLlamaError, match="max_shard_size"):
        Llama(model.config).save_pretrained(tmp_path / "out", max_shard_size="lots")
    assert not (tmp_path / "out").exists()


def test_hub_id_downloads_only_config_tokenizer_and_safetensors(tmp_path, monkeypatch):
    import huggingface_hub

    make_tiny_hf_llama(tmp_path / "snap")
    calls = []

    def fake_snapshot_download(repo_id, allow_patterns):
        calls.append((repo_id, allow_patterns))
        return str(tmp_path / "snap")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    model = Llama.from_pretrained("meta-llama/Llama-2-7b-chat-hf")
    assert model.config.hidden_size == 64
    repo, patterns = calls[0]
    assert repo == "meta-llama/Llama-2-7b-chat-hf"
    assert set(patterns) == {"config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
                             "tokenizer_config.json", "special_tokens_map.json", "*.safetensors",
                             "*.safetensors.index.json"}  # a Llama-3 id brings its tokenizer.json; never a pickle


def test_unsupported_dtype_and_bad_index(tmp_path):
    make_tiny_hf_llama(tmp_path, max_shard_size="30KB")
    index = tmp_path / "model.safetensors.index.json"
    d = json.loads(index.read_text())
    d["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors"
    index.write_text(json.dumps(d))
    with pytest.raises(MiniLlamaError, match="is not a file name"):
        Llama.from_pretrained(tmp_path)
    index.write_text("{}")
    with pytest.raises(MiniLlamaError, match="no weight_map"):
        Llama.from_pretrained(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_device_without_gpu_is_one_line(tmp_path):
    make_tiny_hf_llama(tmp_path)
    with pytest.raises(MiniLlamaError, match="no CUDA GPU"):
        Llama.from_pretrained(tmp_path, device="cuda")
    with pytest.raises(MiniLlamaError, match="not a torch device"):
        Llama.from_pretrained(tmp_path, device="gpu0")
