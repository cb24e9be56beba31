"""The README's demo figures are what the README's first command prints, and the same without the CPU's vector
instructions: the demo runs (fresh cache, as on a new machine), then every number between the README's
`demo figures` marks is rebuilt from its report.json and found there, every table row is found in report.md,
and the quoted answer of `minillama generate` is the one it gives. A second run with ATEN_CPU_CAPABILITY=default
and MKL_ENABLE_INSTRUCTIONS=SSE4_2 (no AVX) writes the same per-item files and the same report."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROMPT = "Doctor, I have a very sore throat, swollen glands and a fever. What should I do?"
pytestmark = pytest.mark.slow  # two whole demos


def run_demo(folder: Path, **env) -> Path:
    """`python scripts/reproduce.py --judge-standin` in `folder`, with its own demo-base cache."""
    folder.mkdir(parents=True, exist_ok=True)
    e = {k: v for k, v in os.environ.items() if k not in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OMP_NUM_THREADS")}
    e.update(MEDLORA_CACHE=str(folder / "cache"), **env)
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), "--judge-standin"], cwd=folder,
                          env=e, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return folder / "runs" / "reproduce-demo"


@pytest.fixture(scope="module")
def native(tmp_path_factory) -> Path:
    return run_demo(tmp_path_factory.mktemp("native"))


def between(text: str, start: str, end: str) -> str:
    return text[text.index(start) + len(start):text.index(end)]


def flat(text: str) -> str:
    return " ".join(text.split())


def expected_prose(r: dict) -> list[str]:
    """The README's sentences about the demo, rebuilt from report.json."""
    t1, tr, gen = r["table1"], r["training"], r["generation"]["models"]
    stops, answers = sum(m["stop"] for m in gen.values()), sum(m["n"] for m in gen.values())
    t3 = {s["model"]: s["means"] for s in r["table3"]["systems"]}
    tracks = r["grounding"]["agreement"]["tracks"]
    tail = re.search(r"each a mean over the track's scores: (.*?)\. \(The rate", r["grounding"]["agreement"]["summary"]).group(1)
    return [
        f"N = {t1['n']} pairs scored, out of {r['held_out']['n']} held-out ids; {t1['exclusions']['n_excluded']} excluded.",
        f"Validation loss {tr['first_val_loss']:.4f} before training -> {tr['best_val_loss']:.4f} after {tr['steps']} "
        f"steps; all {answers} responses stopped at EOS." if stops == answers else "responses hit max_new_tokens",
        f"Table 3 (grounding): the right condition named first {t3['base']['diagnosis_correct']:.4f} (base) -> "
        f"{t3['finetuned']['diagnosis_correct']:.4f} (fine-tuned), tests recall {t3['base']['tests_recall']:.4f} -> "
        f"{t3['finetuned']['tests_recall']:.4f}.",
        f"*On the {tracks['Track A']['n_separating']} items where exactly one model names the reference diagnosis, "
        f"Track A prefers the model that named the reference diagnosis on "
        f"{tracks['Track A']['mean_right_diagnosis_rate']:.0%} of the decisive comparisons ...; Track B ... on "
        f"{tracks['Track B']['mean_right_diagnosis_rate']:.0%} ...: {tail}.*",
    ]


def test_every_figure_the_readme_quotes_is_what_the_demo_prints(native):
    from lora.finetune import demo_model
    from minillama import load_tokenizer

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = between(readme, "<!-- demo figures: checked by tests/test_readme_demo.py -->", "<!-- /demo figures -->")
    report = (native / "report.md").read_text(encoding="utf-8").splitlines()
    rows = [ln for ln in block.splitlines() if ln.startswith("| ") and not ln.startswith("| Model")]
    assert len(rows) == 6 and all(row in report for row in rows), [row for row in rows if row not in report]
    r = json.loads((native / "report.json").read_text())
    for sentence in expected_prose(r):
        assert flat(sentence) in flat(block), sentence
    run = native / "train"
    c = demo_model.held_out_comparison(run, load_tokenizer(run / "base"), "alpaca")
    train_block = between(readme, "<!-- train demo figures -->", "<!-- /train demo")
    assert flat(train_block) == (f"validation loss {r['training']['first_val_loss']:.3f} -> "
                                 f"{r['training']['best_val_loss']:.3f}, held-out unigram F1 {c['base']['mean_f1']:.3f} "
                                 f"(base) -> {c['finetuned']['mean_f1']:.3f} (fine-tuned), right condition named "
                                 f"{c['base']['condition_accuracy']:.0%} -> {c['finetuned']['condition_accuracy']:.0%}")
    answer = subprocess.run([sys.executable, "-m", "minillama", "generate", "--model", str(run), "--prompt", PROMPT],
                            capture_output=True, text=True, timeout=300)
    assert answer.returncode == 0, answer.stderr[-2000:]
    quoted = flat(between(readme, "On the demo it answers: *", "* (the demo's own"))
    assert flat(answer.stdout) == quoted


def test_the_figures_do_not_depend_on_the_cpu_vector_instructions(native, tmp_path):
    plain = run_demo(tmp_path / "plain", ATEN_CPU_CAPABILITY="default", MKL_ENABLE_INSTRUCTIONS="SSE4_2")
    for name in ("generations/base.jsonl", "generations/finetuned.jsonl", "track_a/scores.jsonl",
                 "grounding/grounding.jsonl", "track_b/judgments.jsonl"):
        assert (plain / name).read_bytes() == (native / name).read_bytes(), name

    def findings(run: Path) -> list[str]:  # the report without its timestamp, figures and manifest
        text = (run / "report.md").read_text(encoding="utf-8")
        return text[text.index("## Summary"):text.index("## Figures")].splitlines()
    assert findings(plain) == findings(native)
