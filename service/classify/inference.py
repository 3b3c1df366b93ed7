"""Fast prediction with the trained classifier pipeline: the same numbers at a fraction of the cost.

scikit-learn's `Pipeline.predict_proba` on one text spends most of its ~10 ms validating inputs: the
FeatureUnion validates each vectorizer's output, and CalibratedClassifierCV runs its LinearSVC (one,
or one per fold when it ensembles) and a sigmoid calibrator per class, every call validated again.
The arithmetic is tiny, so `LinearInference` extracts it once at load time:

- each text view (as written, folded) is computed once and fed to the vectorizers' own analyzers,
  which keeps the n-grams exactly scikit-learn's; a character n-gram analyzer that stays inside words
  (char_wb) gives a text the n-grams of its words, so those are looked up once per word, not per text;
- a batch's counts become one sparse matrix per vectorizer, weighted (sublinear tf, idf, l2 norm) in
  numpy as TfidfTransformer does;
- the folds' coefficients (a single one without ensembling), scaled by the FeatureUnion weights, are
  stacked into one matrix, so every fold and class margin comes from one sparse-dense product per
  vectorizer;
- the sigmoid calibrators are applied together, then normalised, clipped and averaged over the folds
  as `_CalibratedClassifier.predict_proba` and `CalibratedClassifierCV.predict_proba` do.

tests/unit/test_classifier_inference.py holds it to the pipeline's own predict_proba.
"""

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain, repeat

import numpy as np
from scipy.sparse import coo_matrix, csr_matrix
from scipy.special import expit
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import Pipeline


def _already_preprocessed(text: str) -> str:
    return text


class _WordColumns(dict[str, list[int]]):
    """word -> the vocabulary columns of its n-grams (known ones only), worked out on first sight; the
    words of a city's reports are few, and a text of new words cannot grow it past `size`."""

    def __init__(self, analyze: Callable[[str], list[str]], vocabulary: dict[str, int], size: int = 200_000):
        super().__init__()
        self._analyze, self._vocabulary, self._size = analyze, vocabulary, size

    def __missing__(self, word: str) -> list[int]:
        lookup = self._vocabulary.get
        columns = [column for column in map(lookup, self._analyze(word)) if column is not None]
        if len(self) < self._size:
            self[word] = columns
        return columns


@dataclass(frozen=True)
class _Block:
    """One vectorizer of the FeatureUnion, with its slice of the stacked coefficients."""

    analyze: Callable[[str], list[str]]  # the vectorizer's analyzer, minus its preprocessor
    vocabulary: dict[str, int]
    idf: np.ndarray
    sublinear_tf: bool
    coefficients: np.ndarray  # (vocabulary size, folds × classes), FeatureUnion weight included
    # char_wb: a text's n-grams are those of its words (scikit-learn splits it as str.split() does)
    word_columns: _WordColumns | None = field(default=None, compare=False, repr=False)

    def margins(self, views: list[str]) -> np.ndarray:
        # The whole batch as one sparse matrix and one product: per-text numpy calls cost more than the arithmetic.
        return np.asarray(self._tf_idf(views) @ self.coefficients)

    def _tf_idf(self, views: list[str]) -> csr_matrix:
        """The vectorizer's output for these views: counts, sublinear tf, idf, l2 norm per row."""
        # map() with a default keeps the vocabulary look-ups in C; unknown features come back as -1.
        lookup = self.vocabulary.get
        columns: list[int] = []
        lengths = []
        for view in views:
            before = len(columns)
            if self.word_columns is not None:
                columns.extend(chain.from_iterable(map(self.word_columns.__getitem__, view.split())))
            else:
                columns.extend(map(lookup, self.analyze(view), repeat(-1)))
            lengths.append(len(columns) - before)
        column_array = np.array(columns, dtype=np.int64)
        known = column_array >= 0
        row_array = np.repeat(np.arange(len(views)), lengths)[known]
        # Repeated (row, column) pairs add up on conversion: each entry ends up holding its feature's count.
        matrix = coo_matrix(
            (np.ones(len(row_array)), (row_array, column_array[known])), shape=(len(views), len(self.vocabulary))
        ).tocsr()
        matrix.sum_duplicates()
        if self.sublinear_tf:
            matrix.data = np.log(matrix.data) + 1.0
        matrix.data *= self.idf[matrix.indices]
        rows = np.repeat(np.arange(len(views)), np.diff(matrix.indptr))
        norms = np.sqrt(np.bincount(rows, weights=matrix.data**2, minlength=len(views)))
        norms[norms == 0] = 1.0  # a text with no known feature stays a row of zeros, as in scikit-learn
        matrix.data /= norms[rows]
        return matrix


class LinearInference:
    """Built once from a fitted Pipeline([("features", FeatureUnion of TfidfVectorizers),
    ("model", CalibratedClassifierCV(linear model, method="sigmoid"))])."""

    def __init__(self, pipeline: Pipeline):
        features, model = pipeline.named_steps["features"], pipeline.named_steps["model"]
        _check_supported(features.transformer_list, model)
        self.classes = model.classes_
        self._folds = len(model.calibrated_classifiers_)
        coefficients, intercept, slope, offset, self._slots = _stack_folds(model)
        self._intercept, self._slope, self._offset = intercept, slope, offset
        weights = features.transformer_weights or {}
        self._preprocessors: list[Callable[[str], str]] = []
        self._blocks: list[tuple[int, _Block]] = []  # (which view, block)
        start = 0
        for name, vectorizer in features.transformer_list:
            width = len(vectorizer.vocabulary_)
            block = _block(vectorizer, weights.get(name, 1.0) * coefficients[start : start + width])
            self._blocks.append((self._view_of(vectorizer.preprocessor), block))
            start += width

    def _view_of(self, preprocessor: Callable[[str], str]) -> int:
        if preprocessor not in self._preprocessors:
            self._preprocessors.append(preprocessor)
        return self._preprocessors.index(preprocessor)

    def views(self, texts: list[str]) -> list[list[str]]:
        """Each preprocessed view of each text, computed once: views[view][text]."""
        return [[preprocess(text) for text in texts] for preprocess in self._preprocessors]

    def view_for(self, vectorizer: TfidfVectorizer, views: list[list[str]]) -> list[str]:
        return views[self._preprocessors.index(vectorizer.preprocessor)]

    def decision_function(self, texts: list[str], views: list[list[str]] | None = None) -> np.ndarray:
        """The linear model's margins, one column per (fold, class): its decision_function, folds side by side."""
        views = views if views is not None else self.views(texts)
        margins = np.tile(self._intercept, (len(texts), 1))
        for view, block in self._blocks:
            margins += block.margins(views[view])
        return margins

    def lead(self, margins: np.ndarray, chosen: np.ndarray) -> np.ndarray:
        """How far the chosen class's margin is ahead of the best other class's (negative when behind)."""
        if self._folds != 1:
            raise TypeError("a lead needs one linear model (CalibratedClassifierCV with ensemble=False)")
        per_class = np.empty_like(margins)
        per_class[:, self._slots[1]] = margins
        rows = np.arange(len(margins))
        own = per_class[rows, chosen]
        per_class[rows, chosen] = -np.inf
        return own - per_class.max(axis=1)

    def predict_proba(
        self, texts: list[str], views: list[list[str]] | None = None, margins: np.ndarray | None = None
    ) -> np.ndarray:
        """What pipeline.predict_proba(texts) returns (to rounding in the last bits)."""
        margins = margins if margins is not None else self.decision_function(texts, views)
        calibrated = expit(-(self._slope * margins + self._offset))
        folds, classes = self._folds, len(self.classes)
        probabilities = np.zeros((len(texts), folds, classes))
        probabilities[:, self._slots[0], self._slots[1]] = calibrated
        return _average_folds(probabilities)


def _check_supported(transformers: list, model: object) -> None:
    """The shape build_pipeline makes; another model must teach this module first (loading fails loudly)."""
    for _, vectorizer in transformers:
        if not (
            isinstance(vectorizer, TfidfVectorizer)
            and isinstance(vectorizer.analyzer, str)
            and callable(vectorizer.preprocessor)
            and vectorizer.use_idf
            and vectorizer.norm == "l2"
            and not vectorizer.binary
        ):
            raise TypeError("the fast path needs a FeatureUnion of l2-normalised tf-idf vectorizers")
    if not isinstance(model, CalibratedClassifierCV) or model.method != "sigmoid" or len(model.classes_) < 3:
        raise TypeError("the fast path needs a multi-class sigmoid CalibratedClassifierCV")


def _block(vectorizer: TfidfVectorizer, coefficients: np.ndarray) -> _Block:
    # The analyzer of a copy whose preprocessor is the identity: the view is computed once outside.
    analyzer = copy.copy(vectorizer)
    analyzer.preprocessor = _already_preprocessed
    analyze = analyzer.build_analyzer()
    return _Block(
        analyze=analyze,
        vocabulary=vectorizer.vocabulary_,
        idf=vectorizer.idf_,
        sublinear_tf=vectorizer.sublinear_tf,
        coefficients=np.ascontiguousarray(coefficients),
        word_columns=_WordColumns(analyze, vectorizer.vocabulary_) if vectorizer.analyzer == "char_wb" else None,
    )


def _stack_folds(model: CalibratedClassifierCV):
    """Every (fold, class) column side by side: coefficients (features × columns), intercepts, the
    sigmoid's slope and offset per column, and where each column lands in (fold, class)."""
    coefficients, intercepts, slopes, offsets, fold_slots, class_slots = [], [], [], [], [], []
    for fold, calibrated in enumerate(model.calibrated_classifiers_):
        estimator = calibrated.estimator
        coefficients.append(estimator.coef_.T)
        intercepts.append(np.broadcast_to(estimator.intercept_, (len(estimator.classes_),)))
        slopes += [calibrator.a_ for calibrator in calibrated.calibrators]
        offsets += [calibrator.b_ for calibrator in calibrated.calibrators]
        fold_slots += [fold] * len(estimator.classes_)
        class_slots += list(np.searchsorted(model.classes_, estimator.classes_))
    return (
        np.hstack(coefficients),
        np.concatenate(intercepts),
        np.array(slopes, dtype=np.float64),
        np.array(offsets, dtype=np.float64),
        (np.array(fold_slots), np.array(class_slots)),
    )


def _average_folds(probabilities: np.ndarray) -> np.ndarray:
    """Per fold: normalise (uniform when every calibrator said 0) and clip overshoot; then the mean."""
    classes = probabilities.shape[2]
    denominator = probabilities.sum(axis=2, keepdims=True)
    uniform = np.full_like(probabilities, 1 / classes)
    probabilities = np.divide(probabilities, denominator, out=uniform, where=denominator != 0)
    probabilities[(probabilities > 1.0) & (probabilities <= 1.0 + 1e-5)] = 1.0
    return probabilities.sum(axis=1) / probabilities.shape[1]
