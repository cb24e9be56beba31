"""evalkit: Track A lexical metrics (BLEU, ROUGE, METEOR), written from their formulas, equal to
sacrebleu / rouge-score / nltk, with explicit exclusions and paired statistics for Table 1.

    import evalkit
    evalkit.bleu("the cat sat on the mat", "the cat sat on a mat")           # sacrebleu preset, 0-1
    evalkit.bleu("the cat sat on the mat", "the cat sat on a mat", preset="nltk")
    evalkit.rouge("the cat sat", "the cat sat down")["rougeL"]               # F1 values
    evalkit.meteor("the cat sat", "the cat sat down")

Clinical grounding against the disease database GenMedGPT-5k was generated from (Table 3):

    db = evalkit.load_disease_db("disease-database.csv")
    scorer = evalkit.GroundingScorer(db)
    scorer.score(response, reference)        # {"reference_condition", "diagnosis_correct", "tests_recall", ...}

Files in, files out, as functions (what the CLI and the pipeline call):

    evalkit.score_files(["base.jsonl", "tuned.jsonl"], "track_a", evalkit.ScoreConfig())       # Table 1
    evalkit.ground_files(["base.jsonl", "tuned.jsonl"], "disease-database.csv", "grounding")   # Table 3

CLI: ``python -m evalkit score --pairs BASE.jsonl --pairs TUNED.jsonl --out DIR`` and
``python -m evalkit ground --pairs BASE.jsonl --pairs TUNED.jsonl --db CSV --out DIR`` (``evalkit/cli.py``).

No torch and no model: the package needs numpy and scipy (matplotlib, optional, for figures).

Inter-rater reliability (Track C): ``krippendorff_alpha``, ``alpha_bootstrap_ci``, ``icc2``, ``weighted_kappa``.
"""
from evalkit.bleu import BLEU, brevity_penalty, bleu, corpus_bleu
from evalkit.commands import RunOptions, ground_files, score_files
from evalkit.disease_db import Condition, DiseaseDB, load_disease_db, write_disease_db
from evalkit.errors import EvalkitError
from evalkit.grounding import GroundingScorer, ground_systems
from evalkit.icc import icc2
from evalkit.kappa import weighted_kappa
from evalkit.krippendorff import alpha_bootstrap_ci, krippendorff_alpha
from evalkit.meteor import meteor, synonyms_available
from evalkit.names import Mention, NameMatcher
from evalkit.records import Record, read_pairs, select_items
from evalkit.rouge import rouge
from evalkit.score import METRICS, ScoreConfig, Scorer, score_systems
from evalkit.stats import (approximate_randomization, cohens_dz, mann_whitney_u, matched_pairs_rank_biserial,
                           mcnemar_exact, paired_bootstrap_ci, rank_biserial, wilcoxon_signed_rank, wilson_interval)
from evalkit.table3 import build_table3, render_table3

__all__ = [
    "BLEU", "bleu", "corpus_bleu", "brevity_penalty", "rouge", "meteor", "synonyms_available",
    "EvalkitError", "Record", "read_pairs", "select_items", "RunOptions", "score_files", "ground_files", "METRICS", "ScoreConfig", "Scorer", "score_systems",
    "mann_whitney_u", "wilcoxon_signed_rank", "paired_bootstrap_ci", "approximate_randomization",
    "rank_biserial", "matched_pairs_rank_biserial", "cohens_dz", "wilson_interval", "mcnemar_exact",
    "Condition", "DiseaseDB", "load_disease_db", "write_disease_db", "Mention", "NameMatcher", "GroundingScorer",
    "ground_systems", "build_table3", "render_table3",
    "krippendorff_alpha", "alpha_bootstrap_ci", "icc2", "weighted_kappa",
]
