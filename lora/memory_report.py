"""`python -m lora memory`: which model (built-in name, config.json, model folder, Hub id) and the printed table."""
from __future__ import annotations

from pathlib import Path

from minillama.config import LlamaConfig, RopeScaling
from minillama.errors import MiniLlamaError

from lora.errors import LoraError
from lora.memory import MemoryEstimate

# The released config.json of each Llama-2 size (Touvron et al. 2023, Table 1 / Sec. 2.2; GQA in 70B only):
# https://huggingface.co/meta-llama/Llama-2-{7b,13b,70b}-hf/blob/main/config.json
BUILTIN = {
    "llama-2-7b": LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                              num_attention_heads=32, num_key_value_heads=32, max_position_embeddings=4096),
    "llama-2-13b": LlamaConfig(vocab_size=32000, hidden_size=5120, intermediate_size=13824, num_hidden_layers=40,
                               num_attention_heads=40, num_key_value_heads=40, max_position_embeddings=4096),
    "llama-2-70b": LlamaConfig(vocab_size=32000, hidden_size=8192, intermediate_size=28672, num_hidden_layers=80,
                               num_attention_heads=64, num_key_value_heads=8, max_position_embeddings=4096),
    # https://huggingface.co/meta-llama/Llama-3.1-8B-Instruct/blob/main/config.json (Meta 2024, the Llama 3 herd)
    "llama-3.1-8b": LlamaConfig(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                                max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                                rope_scaling=RopeScaling(8.0, 1.0, 4.0, 8192), bos_token_id=128000,
                                eos_token_id=128001),
    # https://huggingface.co/meta-llama/Llama-3.2-1B/blob/main/config.json and Llama-3.2-3B (tied embeddings)
    "llama-3.2-1b": LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                                num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                                max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                                rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192), tie_word_embeddings=True,
                                bos_token_id=128000, eos_token_id=128001),
    "llama-3.2-3b": LlamaConfig(vocab_size=128256, hidden_size=3072, intermediate_size=8192, num_hidden_layers=28,
                                num_attention_heads=24, num_key_value_heads=8, head_dim=128,
                                max_position_embeddings=131072, rope_theta=500000.0, rms_norm_eps=1e-5,
                                rope_scaling=RopeScaling(32.0, 1.0, 4.0, 8192), tie_word_embeddings=True,
                                bos_token_id=128000, eos_token_id=128001),
    # https://huggingface.co/mistralai/Mistral-7B-v0.1/blob/main/config.json (Jiang et al. 2023, Table 1)
    "mistral-7b": LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                              num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                              max_position_embeddings=32768, rope_theta=10000.0, rms_norm_eps=1e-5,
                              sliding_window=4096, model_type="mistral"),
}


class HubDownloadError(OSError):
    """config.json could not be fetched from the Hugging Face Hub (offline, gated, not found)."""


def resolve_config(spec: str) -> LlamaConfig:
    """A built-in name, a config.json, a folder holding one, or a Hub id (only config.json is downloaded).

    Raises:
        LoraError: nothing usable at `spec` (bad input).
        HubDownloadError: the Hub download failed.
    """
    from minillama.hub import is_hub_id

    if spec.lower() in BUILTIN:
        return BUILTIN[spec.lower()]
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():  # a llama.cpp file: the config in its header
        from minillama.gguf import llama_config, read_gguf
        try:
            return llama_config(read_gguf(path))
        except MiniLlamaError as e:
            raise LoraError(str(e)) from None
    if path.is_dir():
        path = path / "config.json"
        if not path.is_file():
            raise LoraError(f"{spec}: folder has no config.json")
    elif not path.exists():
        if not is_hub_id(spec):
            raise LoraError(f"{spec}: not a built-in model ({', '.join(BUILTIN)}), a config.json, a model folder "
                            "or a Hub id (owner/name)")
        path = _download_config(spec)
    try:
        return LlamaConfig.from_file(path)
    except MiniLlamaError as e:
        raise LoraError(str(e)) from None


def _download_config(repo_id: str) -> Path:
    """The config.json of `repo_id` from the Hugging Face cache or the Hub, after one probe without retries."""
    from minillama.hub import access_message, access_problem, download_file

    local = f"pass a local config.json or a built-in name ({', '.join(BUILTIN)})"
    problem = access_problem(repo_id)
    if problem:
        raise HubDownloadError(access_message(repo_id, *problem, local))
    try:
        return download_file(repo_id, "config.json")
    except MiniLlamaError as e:
        raise HubDownloadError(str(e)) from None


def gib(n: int) -> str:
    """Bytes in GiB, or in MiB below one GiB (a tiny model's lines are not all 0.00 GiB)."""
    return f"{n / 2**30:8.2f} GiB" if n >= 2**30 else f"{n / 2**20:8.2f} MiB"


def format_table(est: MemoryEstimate, model: str) -> str:
    """The human-readable report of `est` (per GPU)."""
    s = est.settings
    base = "NF4" + (" + double quant" if s["double_quant"] else "") if s["quantize"] else "bf16"
    mode = f"FSDP over {s['gpus']} GPUs" if s["fsdp"] else \
        (f"DDP on {s['gpus']} GPUs (a full replica on each)" if s["gpus"] > 1 else "1 GPU")
    transient = "FSDP all-gather (root + 2 layers)" if s["fsdp"] else \
        ("one dequantised bf16 weight" if s["quantize"] else "")
    rows = [(f"weights (frozen base, {base})", est.weights),
            (f"LoRA parameters (fp32, r={s['r']}{', + DoRA m' if s.get('dora') else ''})", est.lora_params),
            ("LoRA gradients (fp32)", est.lora_grads),
            ("AdamW moments (fp32 m, v)", est.optimizer)]
    if transient:
        rows.append((f"transient: {transient}", est.transient))
    rows += [(f"activations, batch {s['batch']} x {s['seq_len']}", est.activations),
             ("activations with checkpointing", est.activations_checkpointed)]
    lines = [f"{model}: {'DoRA' if s.get('dora') else 'LoRA'} on {','.join(s['target_modules'])}, {mode}, per GPU"]
    lines += [f"  {label:<45}{gib(value)}" for label, value in rows]
    lines += [f"  {'total':<45}{gib(est.total)}", f"  {'total with activation checkpointing':<45}"
              f"{gib(est.total_checkpointed)}",
              "  (not counted: CUDA context and allocator slack, typically 0.3-1 GiB)"]
    return "\n".join(lines)
