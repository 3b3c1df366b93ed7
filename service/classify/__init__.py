"""Classify a citizen's report into one of the catalogue's service codes."""

from service.classify.model import (
    DEFAULT_TRIAGE_THRESHOLD,
    Classifier,
    Prediction,
    corpus_dir,
    load_corpus,
)

__all__ = ["DEFAULT_TRIAGE_THRESHOLD", "Classifier", "Prediction", "corpus_dir", "load_corpus"]
