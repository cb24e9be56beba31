"""Benchmark: all five Track A metrics on the 5,452 GenMedGPT pairs, evalkit vs the reference libraries.

Each output is scored against a perturbed copy of itself (even index) or against the next output
(odd index). Reference side: ``sacrebleu.sentence_bleu`` + ``rouge_score.RougeScorer`` +
``nltk...single_meteor_score`` with nltk's WordNet reader on the same WordNet 3.0 database (copied
into a temporary NLTK data folder, plus the ``lexnames`` file Debian's package leaves out). Both
sides are timed metric by metric in the same run, each after a warm-up pass over 200 pairs of
GenMedGPT inputs (imports, WordNet indexes; no text shared with the timed pairs), in wall and CPU
seconds (CPU time is the steadier number on a shared machine), and the values are compared.
Run on one core:

    taskset -c 0 python bench/bench_evalkit.py [--limit N] [--no-reference]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path


from evalkit.bleu import BLEU
from evalkit.meteor import meteor
from evalkit.rouge import rouge
from evalkit.score import METRICS
from evalkit.wordnet import REQUIRED_FILES, find_wordnet

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "genmedgpt-5k.json"
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()


def perturb(text: str, rng: random.Random, vocab: list[str]) -> str:
    """Drop, duplicate, substitute, upper-case and swap words at random (seeded)."""
    out = []
    for w in text.split():
        r = rng.random()
        if r < 0.08:
            continue
        out += [w, w] if r < 0.14 else [rng.choice(vocab)] if r < 0.22 else [w.upper()] if r < 0.26 else [w]
    for _ in range(len(out) // 10):
        i = rng.randrange(max(1, len(out) - 1))
        out[i:i + 2] = out[i:i + 2][::-1]
    return " ".join(out)


def build_pairs(limit: int | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(hypothesis, reference) for every GenMedGPT output, and 200 warm-up pairs made of its inputs.

    The warm-up pairs share no text with the timed ones, so no side profits from a cache.
    """
    records = json.loads(DATA.read_text(encoding="utf-8"))
    outputs = [r["output"] for r in records]
    rng = random.Random(0)
    vocab = [w for o in outputs[:500] for w in o.split()]
    pairs = [(perturb(o, rng, vocab) if i % 2 == 0 else outputs[(i + 1) % len(outputs)], o)
             for i, o in enumerate(outputs)]
    warmup = [(records[i]["input"], records[i + 1]["input"]) for i in range(200)]
    return (pairs[:limit] if limit else pairs), warmup


def reference_metrics(tmp: Path) -> dict:
    """name -> (hyp, ref) -> values, computed by sacrebleu, rouge-score and nltk."""
    import nltk
    import sacrebleu
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.translate.meteor_score import single_meteor_score
    from rouge_score import rouge_scorer

    source = find_wordnet()
    if source is None or not source.is_dir():
        raise SystemExit("error: WordNet 3.0 folder not found (install wordnet-base or set WORDNET_DIR)")
    for name in REQUIRED_FILES:  # nltk opens only files under its data paths, and needs `lexnames`
        shutil.copyfile(source / name, tmp / name)
    kinds = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    (tmp / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{kinds[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)))
    nltk.data.path.append(str(tmp))

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):  # the OMW mapping needs nltk's own data; unused by METEOR
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wordnet = Reader(str(tmp), None)
    rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])

    def rouge_f(hyp: str, ref: str) -> dict[str, float]:
        r = rouge.score(ref, hyp)
        return {"rouge1": r["rouge1"].fmeasure, "rouge2": r["rouge2"].fmeasure, "rougeL": r["rougeL"].fmeasure}

    return {"BLEU (sacrebleu)": lambda h, r: {"bleu": sacrebleu.sentence_bleu(h, [r]).score / 100},
            "ROUGE (rouge-score)": rouge_f,
            "METEOR (nltk + WordNet)": lambda h, r: {"meteor": single_meteor_score(r.split(), h.split(),
                                                                                  wordnet=wordnet)}}


def evalkit_metrics() -> dict:
    """name -> (hyp, ref) -> values, computed by evalkit (the CLI's defaults)."""
    bleu = BLEU("sacrebleu")
    return {"BLEU (evalkit)": lambda h, r: {"bleu": bleu.sentence(h, r)},
            "ROUGE (evalkit)": lambda h, r: rouge(h, r),
            "METEOR (evalkit)": lambda h, r: {"meteor": meteor(h, r)}}


def timed(metrics: dict, pairs, warmup) -> tuple[float, float, list[dict]]:
    """Wall and CPU seconds of all metrics over all pairs (after the warm-up pairs), and the values."""
    values = [{} for _ in pairs]
    wall = cpu = 0.0
    for name, fn in metrics.items():
        for hyp, ref in warmup:  # imports, compiled regexes, WordNet indexes
            fn(hyp, ref)
        w0, c0 = time.perf_counter(), time.process_time()
        for v, (hyp, ref) in zip(values, pairs):
            v.update(fn(hyp, ref))
        w, c = time.perf_counter() - w0, time.process_time() - c0
        print(f"  {name:<26} {w:7.2f} s wall {c:7.2f} s CPU")
        wall, cpu = wall + w, cpu + c
    return wall, cpu, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--no-reference", action="store_true", help="time evalkit only")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        print(f"error: {DATA}: not found (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    pairs, warmup = build_pairs(args.limit)
    print(f"{len(pairs)} GenMedGPT pairs, five metrics (BLEU, ROUGE-1/2/L F1, METEOR)")
    ours_wall, ours_cpu, ours = timed(evalkit_metrics(), pairs, warmup)
    print(f"evalkit total:   {ours_wall:.2f} s wall, {ours_cpu:.2f} s CPU")
    if args.no_reference:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        ref_wall, ref_cpu, ref = timed(reference_metrics(Path(tmp)), pairs, warmup)
    print(f"reference total: {ref_wall:.2f} s wall, {ref_cpu:.2f} s CPU")
    print(f"speed-up (reference / evalkit): {ref_wall / ours_wall:.1f}x wall, {ref_cpu / ours_cpu:.1f}x CPU")
    worst = {m: max(abs(a[m] - b[m]) for a, b in zip(ours, ref)) for m in METRICS}
    print("largest |evalkit - reference|: " + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
