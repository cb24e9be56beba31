"""Benchmark: all five Track A metrics on the 5,452 GenMedGPT pairs, evalkit vs the reference libraries.

Each output is scored against a perturbed copy of itself (even index) or against the next output
(odd index). Reference side: ``sacrebleu.sentence_bleu`` + ``rouge_score.RougeScorer`` +
``nltk...single_meteor_score`` with nltk's WordNet reader on the same WordNet 3.0 database (copied
into a temporary NLTK data folder, plus the ``lexnames`` file Debian's package leaves out). Both
sides are timed in the same run, after one warm-up pass over 200 pairs (imports, WordNet indexes),
and the values are compared. Run on one core:

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evalkit.score import METRICS, Scorer  # noqa: E402
from evalkit.wordnet import REQUIRED_FILES, find_wordnet  # noqa: E402

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


def build_pairs(limit: int | None = None) -> list[tuple[str, str]]:
    """(hypothesis, reference) for every GenMedGPT output."""
    outputs = [r["output"] for r in json.loads(DATA.read_text(encoding="utf-8"))]
    rng = random.Random(0)
    vocab = [w for o in outputs[:500] for w in o.split()]
    pairs = [(perturb(o, rng, vocab) if i % 2 == 0 else outputs[(i + 1) % len(outputs)], o)
             for i, o in enumerate(outputs)]
    return pairs[:limit] if limit else pairs


def reference_scorer(tmp: Path):
    """A function (hyp, ref) -> five values computed by sacrebleu, rouge-score and nltk."""
    import sacrebleu
    from nltk.corpus.reader.wordnet import WordNetCorpusReader
    from nltk.translate.meteor_score import single_meteor_score
    from rouge_score import rouge_scorer
    import nltk

    source = find_wordnet()
    if source is None or not source.is_dir():
        raise SystemExit("WordNet 3.0 folder not found (install wordnet-base or set WORDNET_DIR)")
    for name in REQUIRED_FILES:
        shutil.copyfile(source / name, tmp / name)
    kinds = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}
    (tmp / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{kinds[n.split('.')[0]]}\n" for i, n in enumerate(LEXNAMES)))
    nltk.data.path.append(str(tmp))

    class Reader(WordNetCorpusReader):
        def map_wn(self, version="wordnet"):
            return None

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wordnet = Reader(str(tmp), None)
    rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])

    def score(hyp: str, ref: str) -> dict[str, float]:
        r = rouge.score(ref, hyp)
        return {"bleu": sacrebleu.sentence_bleu(hyp, [ref]).score / 100, "rouge1": r["rouge1"].fmeasure,
                "rouge2": r["rouge2"].fmeasure, "rougeL": r["rougeL"].fmeasure,
                "meteor": single_meteor_score(ref.split(), hyp.split(), wordnet=wordnet)}
    return score


def timed(score, pairs) -> tuple[float, list[dict]]:
    for hyp, ref in pairs[:200]:  # warm-up: imports, regex and WordNet caches of the first items
        score(hyp, ref)
    start = time.perf_counter()
    values = [score(hyp, ref) for hyp, ref in pairs]
    return time.perf_counter() - start, values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="score only the first N pairs")
    parser.add_argument("--no-reference", action="store_true", help="time evalkit only")
    args = parser.parse_args(argv)
    if not DATA.is_file():
        print(f"error: {DATA}: not found (see ../shared/data/README.md)", file=sys.stderr)
        return 2
    pairs = build_pairs(args.limit)
    ours_s, ours = timed(Scorer().score, pairs)
    print(f"evalkit   (BLEU, ROUGE-1/2/L, METEOR): {len(pairs)} pairs in {ours_s:.2f} s "
          f"({len(pairs) / ours_s:.0f} pairs/s)")
    if args.no_reference:
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        ref_s, ref = timed(reference_scorer(Path(tmp)), pairs)
    print(f"reference (sacrebleu + rouge-score + nltk): {len(pairs)} pairs in {ref_s:.2f} s")
    print(f"speed-up: {ref_s / ours_s:.1f}x")
    worst = {m: max(abs(a[m] - b[m]) for a, b in zip(ours, ref)) for m in METRICS}
    print("largest |evalkit - reference| per metric: " + ", ".join(f"{m} {v:.1e}" for m, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
