"""Score every kept item of every system with the five Track A metrics (Table 1's columns).

Single process, single core: the work is small (tens of microseconds per pair) and the BLEU scorer
caches reference n-grams, so a reference shared by several systems is tokenised and counted once.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Sequence

from tqdm import tqdm

from plumbing.flags import knob

from evalkit.bleu import BLEU, PRESETS
from evalkit.errors import EvalkitError
from evalkit.meteor import SYNONYMS_OFF_NOTE, meteor, synonyms_available
from evalkit.records import Selection, System, check_scoring_input
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

    bleu_preset: str = knob("sacrebleu", "sacrebleu: sentence_bleu (13a, exp smoothing); nltk: sentence_bleu "
                                         "defaults (default: %(default)s)", choices=("sacrebleu", "nltk"))
    bleu_smooth: str | None = knob(None, "override the preset's BLEU smoothing (sacrebleu's or NLTK's methods; "
                                         "default: the preset's)", choices=SACREBLEU_METHODS + NLTK_METHODS, type=str)
    rouge_beta: float = knob(1.0, "ROUGE F-measure beta (1.0 = F1; default: %(default)s)",
                             check=(lambda v: math.isfinite(v) and v > 0, "a finite number > 0"))
    stem: bool = knob(False, "Porter-stem tokens for ROUGE")
    meteor_penalty: bool = knob(True, "METEOR without fragmentation penalty", flag="--no-meteor-penalty")

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


class Scorer:
    """Computes the five metric values of (response, reference) pairs under one ``ScoreConfig``."""

    def __init__(self, config: ScoreConfig = ScoreConfig()):
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
    check_scoring_input("score_systems", systems, selection)
    scorer = Scorer(config)
    rows = []
    bar = tqdm(total=len(systems) * len(selection.ids), desc="scoring", unit="pair", disable=not progress)
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
                bar.update(1)
    bar.close()
    return rows
