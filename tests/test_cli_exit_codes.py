"""One exit-code convention for every command line (docs/cli.md, "Exit codes"), checked by subprocess:
0 success, 1 failure while running, 2 bad input or usage, 130 on SIGINT, 143 on SIGTERM; each error is
one `error: ...` line on stderr, never a traceback."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import fill_disk, make_tiny_hf_llama

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # every test here starts several command-line processes


def run(*argv: str, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("OPENAI_BASE_URL", None)
    return subprocess.run([sys.executable, "-m", *argv], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def assert_one_error_line(proc: subprocess.CompletedProcess, code: int, words: str = "") -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ") or ": error: " in line]
    assert len(errors) == 1, proc.stderr
    assert words in errors[0], proc.stderr


def pairs_file(folder: Path, model: str, n: int = 4) -> Path:
    path = folder / f"{model}.jsonl"
    path.write_text("".join(json.dumps({"id": str(i), "model": model, "prompt": f"Doctor, I have pain {i}?",
                                        "reference": f"Rest and see a doctor {i}.",
                                        "response": f"Rest, drink water and see a doctor {i}."}) + "\n"
                            for i in range(n)))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# evalkit -------------------------------------------------------------------------------------------

def test_evalkit_exit_codes(tmp_path, tiny_tmpfs):
    a, b = pairs_file(tmp_path, "base"), pairs_file(tmp_path, "tuned")
    fast = ["--bootstrap", "50", "--permutations", "50", "--quiet", "--no-figures"]
    assert run("evalkit", "score", "--pairs", str(a), "--pairs", str(b), "--out", str(tmp_path / "o"), *fast
               ).returncode == 0
    assert_one_error_line(run("evalkit", "score", "--pairs", str(tmp_path / "absent.jsonl"), "--out",
                              str(tmp_path / "o2")), 2, "absent.jsonl: cannot read")
    assert_one_error_line(run("evalkit", "score", "--out", str(tmp_path / "o2")), 2, "--pairs")  # argparse usage
    assert_one_error_line(run("evalkit", "score", "--pairs", str(a), "--out", str(tmp_path / "o"), *fast), 2,
                          "exists; pass --force")
    disk = tiny_tmpfs("64k")
    fill_disk(disk)
    assert_one_error_line(run("evalkit", "score", "--pairs", str(a), "--out", str(disk / "o"), *fast), 1,
                          "No space left on device")


# judge ---------------------------------------------------------------------------------------------

def test_judge_and_standin_exit_codes(tmp_path):
    a, b = pairs_file(tmp_path, "base"), pairs_file(tmp_path, "tuned")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "judge.standin", "--port", str(port), "--fail-plan", "400"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "NOT A JUDGE" in server.stdout.readline()
        url = f"http://127.0.0.1:{port}/v1"
        common = ["--pairs", str(a), "--pairs", str(b), "--base-url", url, "--no-progress"]
        # the first request gets the scripted HTTP 400: the server refuses the run -> 1
        assert_one_error_line(run("judge", "run", *common, "--out", str(tmp_path / "j"), "--concurrency", "1"), 1,
                              "HTTP 400: stand-in scripted HTTP 400")
        assert run("judge", "run", *common, "--out", str(tmp_path / "j")).returncode == 0  # resumes
        assert_one_error_line(run("judge", "run", *common, "--out", str(tmp_path / "j2"), "--repeats", "0"), 2,
                              "--repeats: must be at least 1, got 0")
        assert_one_error_line(run("judge", "run", "--pairs", str(a), "--out", str(tmp_path / "j3"),
                                  "--base-url", "notaurl"), 2, "--base-url: 'notaurl' is not an http")
        assert_one_error_line(run("judge", "run", "--pairs", str(a)), 2, "--out")  # argparse usage
        assert_one_error_line(run("judge.standin", "--port", str(port)), 1, "Address already in use")
        assert_one_error_line(run("judge.standin", "--port", "70000"), 2, "--port: must be in 0..65535")
        assert_one_error_line(run("judge.standin", "--fail-plan", "teapot"), 2, "unknown behaviour 'teapot'")
    finally:
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    assert server.returncode == 143 and err == "stand-in stopped\n"


def test_standin_ctrl_c_exits_130():
    server = subprocess.Popen([sys.executable, "-m", "judge.standin", "--port", "0"], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert "NOT A JUDGE" in server.stdout.readline()
    server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=30)
    assert server.returncode == 130 and err == "stand-in stopped\n"


# minillama and lora --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny") / "base"
    make_tiny_hf_llama(folder)
    return folder


def test_minillama_exit_codes(tmp_path, tiny_model, llama2_tokenizer_path):
    assert_one_error_line(run("minillama", "generate", "--model", str(tmp_path / "none"), "--prompt", "x"), 2,
                          "model folder not found")
    assert_one_error_line(run("minillama", "generate", "--prompt", "x"), 2, "--model")  # argparse usage
    assert_one_error_line(run("minillama", "generate", "--model", str(tiny_model), "--prompt", "x",
                              "--tokenizer", str(llama2_tokenizer_path)), 2,
                          "tokenizer has 32000 tokens, the model only 128")
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}  # an empty cache, no network
    assert_one_error_line(run("minillama", "generate", "--model", "medlora-test/absent-model", "--prompt", "x",
                              env=offline), 1, "downloading it from the Hugging Face Hub failed")


def test_lora_exit_codes(tmp_path, tiny_model, tiny_tmpfs):
    import lora
    from minillama import Llama

    model = lora.apply_lora(Llama.from_pretrained(tiny_model), lora.LoraConfig(r=2, alpha=4, dropout=0.0))
    lora.save_adapter(model, tmp_path / "adapter")
    assert run("lora", "count", "--r", "4").returncode == 0
    assert_one_error_line(run("lora", "count", "--r", "0"), 2, "LoraConfig.r must be a positive integer")
    assert_one_error_line(run("lora", "merge", "--base", str(tiny_model)), 2, "--adapter")  # argparse usage
    disk = tiny_tmpfs("64k")
    fill_disk(disk)
    proc = run("lora", "merge", "--base", str(tiny_model), "--adapter", str(tmp_path / "adapter"), "--out",
               str(disk / "merged"))
    assert_one_error_line(proc, 1, f"{disk / 'merged'}: cannot write the merged checkpoint (No space left on device)")
    assert [p.name for p in disk.iterdir()] == ["filler.bin"]  # no partial folder left
    assert run("lora", "merge", "--base", str(tiny_model), "--adapter", str(tmp_path / "adapter"), "--out",
               str(tmp_path / "merged")).returncode == 0
