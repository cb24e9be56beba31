"""Benchmark: one very long response (2k .. 3.2M tokens) against an ordinary GenMedGPT reference.

A 20 MB response line used to get no answer in 300 s: ROUGE-L's bit-parallel LCS built its bit masks
over the *longer* sequence, which costs O(n^2 / 64) for an n-token response. `evalkit.rouge.lcs_length_bits`
now keeps the masks on the shorter side once a sequence exceeds 4,096 tokens. This script times, in
the same run and on the same pairs:

* ROUGE-1/2/L: evalkit against `rouge_score.RougeScorer` (its O(mn) Python table) and against the
  previous LCS (`lcs_before`: `lcs_length_bits` with the masks always on the longer side), values compared;
* BLEU: evalkit against `sacrebleu.sentence_bleu`; METEOR: evalkit against nltk's
  `single_meteor_score`, both without synonyms (a WordNet that knows no word) so only the alignment
  is timed;
* evalkit alone on a 20 MB response (rouge-score's table there would hold some 280 million cells).

    taskset -c 0 python bench/bench_evalkit_long.py [--sizes 2000,8000,32000] [--big-mb 20]
"""
from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

from evalkit.bleu import BLEU
from evalkit.meteor import meteor
from evalkit.rouge import _tokens, lcs_length, lcs_length_bits, rouge_scores

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "genmedgpt-5k.json"


def lcs_before(a, b) -> int:
    """The LCS of evalkit before the fix: masks always over the longer sequence."""
    return lcs_length_bits(a, b, long_side=math.inf)


class NoSynonyms:
    """A WordNet reader that knows no word (nltk's METEOR then aligns by exact words and stems only)."""

    def synsets(self, word):
        return []


def timed(fn, *args):
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,8000,32000", help="response lengths in tokens, all libraries")
    parser.add_argument("--before-sizes", default="8000,128000,1000000", help="lengths for the previous LCS")
    parser.add_argument("--big-mb", type=float, default=20.0, help="size of the evalkit-only response (MB)")
    args = parser.parse_args(argv)
    if DATA.is_file():
        records = json.loads(DATA.read_text(encoding="utf-8"))
        ref = records[0]["output"]
        vocab = " ".join(r["output"] for r in records[:500]).split()
    else:  # still runs, on a small built-in vocabulary
        ref = "You may have a viral infection; drink fluids and rest, and see a doctor if the fever lasts."
        vocab = (ref + " pain cough blood test scan take tablets twice a day for weeks").split()
    rng = random.Random(0)

    def response(n_tokens: int) -> str:
        return " ".join(rng.choice(vocab) for _ in range(n_tokens))

    import nltk.translate.meteor_score as nltk_meteor
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    bleu = BLEU("sacrebleu")
    print(f"reference: {len(ref.split())} words")
    print(f"{'tokens':>9} | {'ROUGE evalkit':>13} {'rouge-score':>12} {'ratio':>7} | {'BLEU evalkit':>12} "
          f"{'sacrebleu':>10} {'ratio':>6} | {'METEOR evalkit':>14} {'nltk':>8} {'ratio':>6}")
    for n in map(int, args.sizes.split(",")):
        hyp = response(n)
        ours, t_ours = timed(rouge_scores, hyp, ref)
        theirs, t_theirs = timed(scorer.score, ref, hyp)
        assert all(tuple(ours[k]) == tuple(theirs[k]) for k in ours), "ROUGE differs from rouge-score"
        b_ours, tb_ours = timed(bleu.sentence, hyp, ref)
        b_theirs, tb_theirs = timed(lambda: sacrebleu.sentence_bleu(hyp, [ref]).score / 100)
        assert abs(b_ours - b_theirs) < 1e-12, "BLEU differs from sacrebleu"
        m_ours, tm_ours = timed(lambda: meteor(hyp, ref, wordnet=None))
        m_theirs, tm_theirs = timed(lambda: nltk_meteor.single_meteor_score(ref.split(), hyp.split(),
                                                                             wordnet=NoSynonyms()))
        assert abs(m_ours - m_theirs) < 1e-12, "METEOR differs from nltk"
        print(f"{n:>9} | {t_ours:>12.3f}s {t_theirs:>11.3f}s {t_theirs / t_ours:>6.1f}x | {tb_ours:>11.3f}s "
              f"{tb_theirs:>9.3f}s {tb_theirs / tb_ours:>5.1f}x | {tm_ours:>13.3f}s {tm_theirs:>7.3f}s "
              f"{tm_theirs / tm_ours:>5.1f}x")
    print(f"\n{'tokens':>9} | {'LCS now':>9} {'LCS before':>11} {'ratio':>7}")
    ref_tokens = _tokens(ref, False)
    for n in map(int, args.before_sizes.split(",")):
        hyp_tokens = _tokens(response(n), False)
        now, t_now = timed(lcs_length, hyp_tokens, ref_tokens)
        before, t_before = timed(lcs_before, hyp_tokens, ref_tokens)
        assert now == before
        print(f"{n:>9} | {t_now:>8.3f}s {t_before:>10.3f}s {t_before / t_now:>6.0f}x")
    words, size = [], 0
    while size < args.big_mb * 1e6:
        w = rng.choice(vocab)
        words.append(w)
        size += len(w) + 1
    hyp = " ".join(words)
    _, t_rouge = timed(rouge_scores, hyp, ref)
    _, t_bleu = timed(bleu.sentence, hyp, ref)
    _, t_meteor = timed(lambda: meteor(hyp, ref, wordnet=None))
    print(f"\n{args.big_mb:g} MB response ({len(words):,} words), evalkit only: ROUGE {t_rouge:.1f} s, BLEU "
          f"{t_bleu:.1f} s, METEOR {t_meteor:.1f} s (rouge-score's table would hold {len(words) * 88:,} cells)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
