"""BLEU's smoothing methods, where they were imported from before: sacrebleu's are in ``evalkit.bleu``
(with the standard BLEU), NLTK's ``method0``-``method7`` in ``evalkit.bleu_nltk``."""
from evalkit.bleu import SACREBLEU_DEFAULTS, SACREBLEU_METHODS, smooth_sacrebleu  # noqa: F401
from evalkit.bleu_nltk import NLTK_METHODS, BleuWarning, NltkContext, smooth_nltk  # noqa: F401
