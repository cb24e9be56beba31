"""The reproduction pipeline behind `scripts/reproduce.py` (the paper's Figure 2): its configuration,
the stages' bookkeeping, the generation stage, the manifest and the report."""
