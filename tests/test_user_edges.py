"""Edges a new user meets with their own Llama-3 and Mistral folders, each through the real command line: their own
base without --data, an adapter applied to another base, `lora merge` and the base's tokenizer files, one line for
every flag error, `lora count` / `lora memory` on a folder, a top-level `partial_rotary_factor`, a warm-up longer
than the run, and the interactive chat in a pseudo-terminal."""
from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import lora
from lora.base_check import FINGERPRINT_NAME
from lora.finetune import train
from lora.finetune.flags import config_from_args
from minillama import Llama, load_tokenizer
from test_train_new_bases import dataset, llama3_base, mistral_base, train_args  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}  # the test run's own environment (the checkout on its path)


def cli(*args, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python ARGS` from the repository root (a module with -m, or a script path)."""
    return subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env=ENV)


def lines(text: str, start: str) -> list[str]:
    """The lines of `text` that start with `start` (progress bars, which redraw with \\r, left out)."""
    return [line for line in text.splitlines() if line.startswith(start)]


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    assert proc.returncode == code, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "usage:" not in proc.stderr
    return proc.stderr.strip()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, llama3_base, mistral_base, dataset):  # noqa: F811
    """One finished three-step run on each base: (llama3 run, mistral run)."""
    root = tmp_path_factory.mktemp("runs")
    return (train(config_from_args(train_args(llama3_base, dataset, root / "l3", "llama3"))[0]),
            train(config_from_args(train_args(mistral_base, dataset, root / "mistral", "mistral"))[0]))


# --- 1. their own base without --data -------------------------------------------------------------------------

def test_own_base_without_data_is_one_line_naming_data(llama3_base, tmp_path):  # noqa: F811
    proc = cli("scripts/train.py", "--base", llama3_base, "--template", "llama3", "--max-steps", "2",
               "--out", tmp_path / "x")
    line = one_error_line(proc)
    assert line.startswith("error: --data: the demo data is made for the demo base only") and "--data FILE" in line
    assert not (tmp_path / "x").exists()
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"preset": "demo", "train_args": ["--base", str(llama3_base), "--template", "llama3",
                                                                   "--max-steps", "2"]}))
    proc = cli("scripts/reproduce.py", "--config", config, "--run-dir", tmp_path / "r", "--judge-standin")
    assert one_error_line(proc).startswith("error: --data: the demo data is made for the demo base only")
    assert not (tmp_path / "r").exists()


# --- 2. an adapter applied to another base --------------------------------------------------------------------

def test_training_records_the_base_fingerprint(runs, llama3_base):  # noqa: F811
    l3, _ = runs
    recorded = json.loads((l3 / "adapter" / FINGERPRINT_NAME).read_text())
    assert recorded == json.loads((l3 / "config.json").read_text())["resolved"]["base_fingerprint"]
    assert recorded["summary"] == "llama, 2 layers, hidden 64, vocab " + str(Llama.from_pretrained(llama3_base)
                                                                              .config.vocab_size)
    assert json.loads((l3 / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"] == \
        str(llama3_base)


def test_merge_onto_another_base_warns_and_strict_refuses(runs, llama3_base, mistral_base, tmp_path):  # noqa: F811
    l3, _ = runs
    proc = cli("-m", "lora", "merge", "--base", mistral_base, "--adapter", l3 / "adapter", "--out", tmp_path / "m")
    assert proc.returncode == 0, proc.stderr[-2000:]
    [warning] = lines(proc.stderr, "warning:")
    assert warning.startswith(f"warning: --adapter {l3 / 'adapter'}: trained on the base {llama3_base} (llama, ")
    assert f"not on {mistral_base} (mistral, " in warning and warning.endswith("(--strict refuses it)")
    proc = cli("-m", "lora", "merge", "--base", mistral_base, "--adapter", l3 / "adapter", "--out", tmp_path / "s",
               "--strict")
    assert f"trained on the base {llama3_base}" in one_error_line(proc)
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s*"))
    proc = cli("-m", "lora", "merge", "--base", llama3_base, "--adapter", l3 / "adapter", "--out", tmp_path / "ok",
               "--strict")  # its own base: no warning
    assert proc.returncode == 0 and not lines(proc.stderr, "warning:") and not lines(proc.stderr, "note:")


def test_same_base_elsewhere_passes_and_an_older_adapter_is_checked_by_its_named_folder(runs, llama3_base,  # noqa: F811
                                                                                      mistral_base, tmp_path):  # noqa: F811
    l3, _ = runs
    copy = shutil.copytree(llama3_base, tmp_path / "copy-of-llama3")  # another path, the same model
    proc = cli("-m", "lora", "merge", "--base", copy, "--adapter", l3 / "adapter", "--out", tmp_path / "a", "--strict")
    assert proc.returncode == 0 and not lines(proc.stderr, "warning:"), proc.stderr[-2000:]
    older = tmp_path / "older"  # no base_fingerprint.json, not in a run folder: only base_model_name_or_path
    older.mkdir()
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        shutil.copyfile(l3 / "adapter" / name, older / name)
    proc = cli("-m", "lora", "merge", "--base", mistral_base, "--adapter", older, "--out", tmp_path / "b")
    assert proc.returncode == 0
    [warning] = lines(proc.stderr, "warning:")
    assert f"trained on the base {llama3_base} (llama, " in warning


def test_generate_with_an_adapter_of_another_base_warns_and_strict_refuses(runs, llama3_base,  # noqa: F811
                                                                           mistral_base):  # noqa: F811
    _, mistral = runs
    # --template llama3: the run's own (mistral) format is refused on a Llama-3 tokenizer before the base check
    args = ["-m", "minillama", "generate", "--model", llama3_base, "--adapter", mistral / "adapter", "--prompt",
            "I have a cough.", "--max-new-tokens", "2", "--template", "llama3"]
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    [warning] = [line for line in lines(proc.stderr, "warning:") if "trained on the base" in line]
    assert warning == (f"warning: {mistral / 'adapter'}: trained on the base {mistral_base} (mistral, 2 layers, "
                       f"hidden 64, vocab {Llama.from_pretrained(mistral_base).config.vocab_size}), not on "
                       f"{llama3_base} (llama, 2 layers, hidden 64, vocab "
                       f"{Llama.from_pretrained(llama3_base).config.vocab_size}); an adapter on another base answers "
                       "nonsense (--strict refuses it)")
    assert f"trained on the base {mistral_base}" in one_error_line(cli(*args[:-2], "--strict"))  # before the format
    proc = cli("-m", "minillama", "generate", "--model", mistral, "--prompt", "I have a cough.", "--max-new-tokens",
               "2", "--strict")  # the run on its own base
    assert proc.returncode == 0 and not lines(proc.stderr, "warning:"), proc.stderr[-2000:]


# --- 4. lora merge and the base's tokenizer files ----------------------------------------------------------------

def test_merge_copies_a_tokenizer_json_base_and_the_merged_model_chats(runs, llama3_base, tmp_path):  # noqa: F811
    l3, _ = runs
    out = tmp_path / "merged"
    proc = cli("-m", "lora", "merge", "--base", llama3_base, "--adapter", l3 / "adapter", "--out", out)
    assert proc.returncode == 0 and not lines(proc.stderr, "note:"), proc.stderr[-2000:]
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (llama3_base / name).read_bytes(), name
    ours, theirs = load_tokenizer(out), load_tokenizer(llama3_base)
    text = "I have a sore throat and a fever."
    assert ours.encode(text, bos=True) == theirs.encode(text, bos=True) and ours.eos_ids == theirs.eos_ids
    proc = cli("-m", "minillama", "generate", "--model", out, "--template", "llama3", "--prompt", "I have a cough.",
               "--max-new-tokens", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_merge_copies_a_sentencepiece_base(runs, mistral_base, tmp_path):  # noqa: F811
    _, mistral = runs
    out = tmp_path / "merged"
    proc = cli("-m", "lora", "merge", "--base", mistral_base, "--adapter", mistral / "adapter", "--out", out)
    assert proc.returncode == 0 and not lines(proc.stderr, "note:"), proc.stderr[-2000:]
    assert (out / "tokenizer.model").read_bytes() == (mistral_base / "tokenizer.model").read_bytes()
    assert load_tokenizer(out).encode("a cough", bos=True) == load_tokenizer(mistral_base).encode("a cough", bos=True)


@pytest.mark.parametrize("name, content", [("tokenizer.json", "{not json"),
                                           ("tokenizer_config.json", "[1, 2]"),
                                           ("chat_template.jinja", b"\xff\xfe{{ bad")])
def test_merge_refuses_a_broken_tokenizer_file_before_writing(runs, llama3_base, tmp_path, name, content):  # noqa: F811
    l3, _ = runs
    base = shutil.copytree(llama3_base, tmp_path / "base")
    (base / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    proc = cli("-m", "lora", "merge", "--base", base, "--adapter", l3 / "adapter", "--out", tmp_path / "out")
    line = one_error_line(proc)
    assert str(base / name) in line and "nothing was written" in line
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))


def test_merge_without_a_tokenizer_says_so_in_one_note(runs, llama3_base, tmp_path):  # noqa: F811
    l3, _ = runs
    base = tmp_path / "base"
    base.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):  # no tokenizer
        shutil.copyfile(llama3_base / name, base / name)
    proc = cli("-m", "lora", "merge", "--base", base, "--adapter", l3 / "adapter", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "generation_config.json").read_bytes() == (base / "generation_config.json").read_bytes()
    assert lines(proc.stderr, "note:") == [f"note: the base {base} has no tokenizer.model or tokenizer.json; "
                                           f"{tmp_path / 'out'} has no tokenizer (copy one in, or pass --tokenizer "
                                           "to python -m minillama generate)"]


# --- 5. one line for flag errors, in every command line ----------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["-m", "minillama", "generate", "--model", "x", "--template", "foo"],
    ["-m", "minillama", "generate", "--model", "x", "--max-new-tokens", "abc"],
    ["-m", "minillama"],
    ["-m", "lora", "memory", "--r", "abc"],
    ["-m", "lora", "merge"],
    ["-m", "lora", "count", "--model", "llama-2-7b", "--config", "x.json"],
    ["-m", "evalkit", "score", "--pairs", "a.jsonl", "--out", "o", "--bleu-preset", "foo"],
    ["-m", "evalkit", "ground", "--pairs", "a.jsonl"],
    ["-m", "judge", "run", "--pairs", "a.jsonl", "--out", "o", "--concurrency", "abc"],
    ["-m", "judge", "rerun"],
    ["-m", "judge.human", "serve", "--store", "s.db", "--raters", "a", "--per-rater", "x"],
    ["-m", "judge.human", "export"],
    ["-m", "judge.standin", "--port", "abc"],
    ["scripts/train.py", "--lr", "abc"],
    ["scripts/reproduce.py", "--no-such-flag"],
], ids=lambda a: " ".join(a[1:4]) if a[0] == "-m" else " ".join(a[:2]))
def test_a_flag_error_is_one_line_and_exit_2(args, tmp_path):
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, env=ENV,
                          cwd=tmp_path if args[0] == "-m" else REPO)
    one_error_line(proc)
    assert proc.stdout == "" and not list(tmp_path.iterdir())


# --- 6. lora count and lora memory on the same models ------------------------------------------------------------

def test_count_and_memory_take_the_same_model_folder(llama3_base):  # noqa: F811
    proc = cli("-m", "lora", "count", "--model", llama3_base, "--r", "4")
    assert proc.returncode == 0, proc.stderr
    model = Llama.from_pretrained(llama3_base)
    expected = str(lora.trainable_summary(lora.apply_lora(model, lora.LoraConfig(r=4))))
    assert proc.stdout == expected + "\n"
    memory = cli("-m", "lora", "memory", "--model", llama3_base, "--r", "4")
    assert memory.returncode == 0, memory.stderr
    rows = memory.stdout.splitlines()
    assert rows[1] == f"  LoRA {expected}"
    sizes = [row for row in rows if row.endswith(("GiB", "MiB"))]
    assert len(sizes) == 8 and all(row.endswith("MiB") and " 0.00 MiB" not in row for row in sizes)
    report = json.loads(cli("-m", "lora", "memory", "--model", llama3_base, "--r", "4", "--json").stdout)
    assert f"{report['bytes']['weights'] / 2**20:8.2f} MiB" in rows[2]
    assert report["trainable_params"] == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert cli("-m", "lora", "count", "--model", "llama-3.1-8b").stdout.startswith("trainable params: 6,815,744 ||")
    assert "14.11 GiB" in cli("-m", "lora", "memory", "--model", "llama-2-7b").stdout  # large models stay in GiB


# --- 7. partial_rotary_factor at the top level of config.json ----------------------------------------------------

@pytest.mark.parametrize("factor, refused", [(0.5, True), (1.0, False)])
def test_top_level_partial_rotary_factor(llama3_base, tmp_path, factor, refused):  # noqa: F811
    base = shutil.copytree(llama3_base, tmp_path / "base")
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "partial_rotary_factor": factor}))
    proc = cli("-m", "minillama", "generate", "--model", base, "--prompt", "a cough", "--max-new-tokens", "1")
    if refused:
        assert one_error_line(proc) == (f"error: {base / 'config.json'}: partial_rotary_factor=0.5 is not supported "
                                        "(minillama rotates the whole head; 1.0 or no key)")
        out = tmp_path / "run"
        assert one_error_line(cli("scripts/train.py", "--preset", "none", "--base", base, "--data", "x.json",
                                  "--out", out)).startswith(f"error: {base / 'config.json'}: partial_rotary_factor")
        assert not out.exists()
    else:
        assert proc.returncode == 0, proc.stderr[-2000:]


# --- 8. a warm-up longer than the run ----------------------------------------------------------------------------

@pytest.mark.parametrize("steps, extra, where", [
    (2, ["--max-steps", "2"], "--max-steps 2"),
    (5, ["--num-epochs", "1"], "from --num-epochs 1; no --max-steps"),  # 20 training records, batch 4
])
def test_a_warmup_longer_than_the_run_is_one_warning(llama3_base, dataset, tmp_path, steps, extra, where):  # noqa: F811
    out = tmp_path / "run"
    proc = cli("scripts/train.py", "--preset", "none", "--base", llama3_base, "--data", dataset, "--out", out,
               "--template", "llama3", "--val-size", "4", "--batch-size", "4", "--micro-batch-size", "4",
               "--cutoff-len", "400", "--num-threads", "1", *extra)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak = 3e-4 * steps / 100
    assert lines(proc.stderr, "warning:") == [
        f"warning: --warmup-steps 100 is longer than the run's {steps} steps ({where}): the learning rate peaks "
        f"at {peak:.1e} of 3.0e-04; give a --warmup-steps below the run's steps"]
    logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r["lr"] for r in logged if "lr" in r) == pytest.approx(peak)


# --- 9. the interactive chat in a pseudo-terminal ----------------------------------------------------------------

class Terminal:
    """`python -m minillama generate ARGS` with stdin, stdout and stderr on one pseudo-terminal."""

    def __init__(self, *args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the command, on the terminal
            os.chdir(REPO)
            os.execve(sys.executable, [sys.executable, "-m", "minillama", "generate", *map(str, args)],
                      {**ENV, "TERM": "xterm"})
        self.seen = ""
        self.pos = 0  # where the last expected text ended

    def read(self, timeout: float) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.fd, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                self.seen += chunk.decode("utf-8", "replace")
                return chunk.decode("utf-8", "replace")
        return ""

    def expect(self, pattern: str, timeout: float = 120) -> None:
        """Wait for `pattern` after the previous expected text (output read meanwhile is searched too)."""
        end = time.monotonic() + timeout
        while not (found := re.search(pattern, self.seen[self.pos:])):
            assert time.monotonic() < end, f"no {pattern!r} in {self.seen[-1500:]!r}"
            self.read(0.5)
        self.pos += found.end()

    def send(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def wait(self, timeout: float = 60) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.read(0.2)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                while self.read(0.2):
                    pass
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        raise AssertionError(f"still running: {self.seen[-1500:]!r}")


def test_interactive_chat_in_a_terminal(runs):
    l3, _ = runs
    term = Terminal("--model", l3, "--interactive", "--max-new-tokens", "100000")
    term.expect(r"\nyou> ")
    term.send("I have a cough.\r")
    term.expect(r"model> ")
    term.send("\x03")  # Ctrl-C during the answer: stops this answer only
    term.expect(r"answer stopped \(Ctrl-C\)")
    term.expect(r"\nyou> ")
    time.sleep(0.5)  # readline draws the prompt before it waits for keys (see the next test)
    term.send("abc\x04")  # a half-typed line and Ctrl-D: not sent (readline deletes, nothing happens)
    term.read(1.5)
    assert "model> " not in term.seen.rsplit("you> ", 1)[1]
    term.send("\x15\x04")  # Ctrl-U empties the line, Ctrl-D ends the conversation
    assert term.wait() == 0
    text = term.seen.replace("\r\n", "\n")
    assert text.endswith("\n") and text.rstrip("\n").rsplit("\n", 1)[1].startswith("you> ")  # then the shell's
    # prompt starts on a line of its own (the last line is readline's redraw of "you> abc" emptied by Ctrl-U)
    note = text.index("note: the model's context is 512 positions")
    assert note < text.index("model> ") and "note:" not in text[text.index("model> "):].split("\n")[0]


def test_second_ctrl_c_at_the_prompt_ends_the_conversation(runs):
    l3, _ = runs
    term = Terminal("--model", l3, "--interactive", "--max-new-tokens", "2")
    term.expect(r"\nyou> ")
    time.sleep(0.5)  # CPython's readline draws the prompt, then waits in select(): a SIGINT in between waits
    term.send("\x03")  # for the next key (a person does not type within those microseconds; a test can)
    assert term.wait() == 130
    assert term.seen.replace("\r\n", "\n").endswith("you> \ninterrupted\n")


def test_a_half_typed_line_at_the_end_of_the_input_is_not_sent(runs):
    """Without a terminal (input piped), a last line without its newline is not sent either."""
    l3, _ = runs
    proc = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(l3), "--interactive",
                           "--max-new-tokens", "2"], input="I have a cough.\nabc", capture_output=True, text=True,
                          timeout=120, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("model> ") == 1  # "abc" was not answered
    assert proc.stderr.endswith("\n") and proc.stderr.splitlines()[-1] == "you> "  # the last prompt, then a newline
