"""Score every kept item of every system with the five Track A metrics (Table 1's columns).

Single process, single core: the work is small (tens of microseconds per pair) and the BLEU scorer
caches reference n-grams, so a reference shared by several systems is tokenised and counted once.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence, TextIO

from evalkit.bleu import BLEU, PRESETS
from evalkit.errors import EvalkitError
from evalkit.meteor import SYNONYMS_OFF_NOTE, meteor, synonyms_available
from evalkit.records import Selection, System
from evalkit.rouge import check_beta, rouge
from evalkit.smoothing import NLTK_METHODS, SACREBLEU_METHODS, BleuWarning

METRICS = ("bleu", "rouge1", "rouge2", "rougeL", "meteor")
METRIC_LABELS = {"bleu": "BLEU", "rouge1": "ROUGE-1F", "rouge2": "ROUGE-2F", "rougeL": "ROUGE-LF",
                 "meteor": "METEOR"}


@dataclass(frozen=True)
class ScoreConfig:
    """How each metric is computed.

    Attributes:
        bleu_preset: ``"sacrebleu"`` (13a, exp smoothing, effective order) or ``"nltk"``.
        bleu_smooth: override the preset's smoothing (``none|floor|add-k|exp|method0..method7``).
        rouge_beta: F-measure beta of ROUGE-1/2/L (1.0: F1; the paper's recall-weighted F uses > 1).
        stem: Porter-stem tokens before ROUGE (rouge_score's ``use_stemmer``).
        meteor_penalty: keep METEOR's fragmentation penalty; False gives the paper's Eq. 8 (Fmean only).
    """

    bleu_preset: str = "sacrebleu"
    bleu_smooth: str | None = None
    rouge_beta: float = 1.0
    stem: bool = False
    meteor_penalty: bool = True

    def __post_init__(self) -> None:
        if self.bleu_preset not in PRESETS:
            raise ValueError(f"ScoreConfig.bleu_preset must be one of {sorted(PRESETS)}, got {self.bleu_preset!r}")
        if self.bleu_smooth is not None and self.bleu_smooth not in SACREBLEU_METHODS + NLTK_METHODS:
            raise ValueError(f"ScoreConfig.bleu_smooth must be None or one of {SACREBLEU_METHODS + NLTK_METHODS}, "
                             f"got {self.bleu_smooth!r}")
        check_beta(self.rouge_beta)
        for name in ("stem", "meteor_penalty"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"ScoreConfig.{name} must be True or False, got {getattr(self, name)!r}")

    def describe(self) -> dict:
        """The settings and the synonym stage's availability, for table1.json and table1.md."""
        d = asdict(self)
        d["meteor_synonyms"] = synonyms_available()
        d["meteor_note"] = None if d["meteor_synonyms"] else SYNONYMS_OFF_NOTE
        return d


class Progress:
    """A tiny dependency-free progress line on stderr (the idea of ``minillama/progress.py``).

    Redraws in place on a terminal (at most every 0.1 s) and prints a line every 10 s otherwise.
    """

    def __init__(self, total: int, desc: str, file: TextIO | None = None, disable: bool = False):
        self.total, self.desc, self.n = total, desc, 0
        self.file = file or sys.stderr
        self.disable = disable
        self.tty = hasattr(self.file, "isatty") and self.file.isatty()
        self.interval = 0.1 if self.tty else 10.0
        self.start = self.last = time.perf_counter()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.perf_counter()
        if not self.disable and now - self.last >= self.interval:
            self.last = now
            self._draw(end="")

    def close(self) -> None:
        if not self.disable:
            self._draw(end="\n")
            self.disable = True

    def _draw(self, end: str) -> None:
        elapsed = time.perf_counter() - self.start
        frac = self.n / self.total if self.total else 1.0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        line = f"{self.desc}: {frac * 100:5.1f}% |{'#' * int(frac * 20):<20}| {self.n}/{self.total} " \
               f"[{elapsed:.1f}s, {rate:.0f} pairs/s]"
        self.file.write(("\r" + line + end) if self.tty else (line + "\n"))
        self.file.flush()


class Scorer:
    """Computes the five metric values of (response, reference) pairs under one ``ScoreConfig``."""

    def __init__(self, config: ScoreConfig = ScoreConfig()):
        if not isinstance(config, ScoreConfig):
            raise TypeError(f"Scorer takes a ScoreConfig, got {type(config).__name__}")
        self.config = config
        self.bleu = BLEU(config.bleu_preset, smooth=config.bleu_smooth)
        self.meteor_kwargs = {} if config.meteor_penalty else {"penalty": False}

    def score(self, hyp: str, ref: str) -> dict[str, float]:
        """All five metrics of one pair, floats in [0, 1]."""
        r = rouge(hyp, ref, beta=self.config.rouge_beta, stem=self.config.stem)
        return {"bleu": self.bleu.sentence(hyp, ref), "rouge1": r["rouge1"], "rouge2": r["rouge2"],
                "rougeL": r["rougeL"], "meteor": meteor(hyp, ref, **self.meteor_kwargs)}


def score_systems(systems: Sequence[System], selection: Selection, config: ScoreConfig = ScoreConfig(),
                  progress: bool = True) -> list[dict]:
    """Per-item rows ``{"id", "model", "bleu", "rouge1", "rouge2", "rougeL", "meteor"}``.

    Rows come system by system (``--pairs`` order), items in ``selection.ids`` order.

    Raises:
        EvalkitError: ``"<file>:<line>: cannot score id ..."`` when a metric rejects an item.
    """
    if isinstance(systems, System) or not isinstance(systems, (list, tuple)) or \
            not all(isinstance(s, System) for s in systems):
        raise TypeError("score_systems takes a list of System (from evalkit.read_pairs), got "
                        f"{type(systems).__name__}")
    if not isinstance(selection, Selection):
        raise TypeError(f"score_systems takes a Selection (from evalkit.select_items), got {type(selection).__name__}")
    missing = [(s.path, i) for s in systems for i in selection.ids if i not in s.records]
    if missing:
        raise ValueError(f"selection id {missing[0][1]!r} is not in {missing[0][0]}; build the selection from "
                         "these systems with evalkit.select_items")
    scorer = Scorer(config)
    rows = []
    bar = Progress(len(systems) * len(selection.ids), "scoring", disable=not progress)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BleuWarning)  # NLTK's method0 warns per zero order; values say it
        for system in systems:
            for item_id in selection.ids:
                rec = system.records[item_id]
                try:
                    values = scorer.score(rec.response, rec.reference)
                except ValueError as e:  # e.g. NLTK's method6 on a response without 3-gram matches
                    raise EvalkitError.at(rec.path, rec.line, f"cannot score id {item_id!r}: {e}") from None
                rows.append({"id": item_id, "model": system.model, **values})
                bar.update()
    bar.close()
    return rows
