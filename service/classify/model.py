"""The report classifier: a linear model over word and character n-grams.

Trained from the hand-written corpus in `corpus/<service_code>.jsonl` (the file
name is the label). Training takes seconds, so there is no model file in the
repository: the first process to start trains and caches the fitted model with
joblib, keyed by a hash of the corpus and of this code, and everyone after it
loads the cache. Editing the corpus therefore retrains on the next start.
"""

import contextlib
import hashlib
import inspect
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import sklearn
from scipy.sparse.csgraph import connected_components
from scipy.special import expit
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV, _fit_calibrator
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from service.classify.inference import LinearInference
from service.classify.text import canonical, lower

log = logging.getLogger(__name__)

# The source of these files is part of the cache key, so a change to the
# features or the model retrains without anyone remembering to bump a number.
_CODE_FILES = ("model.py", "text.py")

# Below this confidence (the estimated chance that the chosen field is right) a report goes to a
# human for triage instead of being routed automatically. Chosen from cross-validation
# (bench/classifier_cv.py) to keep the triage rate under 15 %.
DEFAULT_TRIAGE_THRESHOLD = 0.80


@dataclass(frozen=True)
class Prediction:
    service_code: str
    confidence: float
    triage: bool


def corpus_dir() -> Path:
    return Path(__file__).parent / "corpus"


def load_corpus(directory: Path | None = None) -> list[tuple[str, str]]:
    """(text, service_code) pairs from every `<service_code>.jsonl` file."""
    examples: list[tuple[str, str]] = []
    for path in sorted((directory or corpus_dir()).glob("*.jsonl")):
        seen: set[str] = set()
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            text = json.loads(line)["text"].strip()
            if text and text not in seen:
                seen.add(text)
                examples.append((text, path.stem))
    return examples


def corpus_version(directory: Path | None = None) -> str:
    """Hash of the corpus files, this code and scikit-learn (pickles are not
    portable across scikit-learn releases)."""
    digest = hashlib.sha256(sklearn.__version__.encode())
    for name in _CODE_FILES:
        digest.update((Path(__file__).parent / name).read_bytes())
    for path in sorted((directory or corpus_dir()).glob("*.jsonl")):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _words(preprocessor) -> TfidfVectorizer:
    # The token pattern keeps one-letter words such as "k" (không) or "r" (rồi).
    return TfidfVectorizer(
        preprocessor=preprocessor,
        analyzer="word",
        ngram_range=(1, 2),
        token_pattern=r"(?u)\b\w+\b",
        sublinear_tf=True,
    )


def _characters(preprocessor) -> TfidfVectorizer:
    # char_wb n-grams survive typos, missing spaces and partial diacritics.
    return TfidfVectorizer(
        preprocessor=preprocessor,
        analyzer="char_wb",
        ngram_range=(2, 5),
        sublinear_tf=True,
        min_df=2,
    )


class CalibratedWithLead(CalibratedClassifierCV):
    """CalibratedClassifierCV that also learns how often its first choice is right, from the lead of
    that choice's margin over the runner-up's.

    The calibrated probabilities pick the field; the lead decides how sure we are. Each class's sigmoid
    looks at one margin alone, so a report that two fields both claim strongly can still get a high top
    probability; the gap between the two is what tells those apart. Out-of-fold margins and a one-feature
    logistic regression turn the lead into a probability.
    """

    def fit(self, X, y, sample_weight=None, groups=None, **fit_params):
        """`groups` (rewording_groups of the texts) keeps one complaint's rewordings in one fold: a model
        that has seen a sentence in another spelling is surer than it should be.

        One set of out-of-fold margins serves both the per-class sigmoids and the lead's logistic
        regression, as CalibratedClassifierCV(ensemble=False) does for its sigmoids alone: six fits of
        the linear model (five folds and the whole corpus), not eleven."""
        if sample_weight is not None or fit_params:
            raise TypeError("CalibratedWithLead takes no sample weights or fit parameters")
        y = np.asarray(y)
        folds = self.cv
        if groups is not None and _groups_per_class(y, groups) >= 5:
            folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
        else:
            groups = None  # a corpus too small to hold every field in five folds of distinct sentences
        estimator = clone(self.estimator)
        margins = cross_val_predict(estimator, X, y, groups=groups, cv=folds, method="decision_function")
        estimator.fit(X, y)
        self.classes_ = estimator.classes_
        self.calibrated_classifiers_ = [_sigmoids(estimator, margins, y)]
        self.n_features_in_ = estimator.n_features_in_
        ordered = np.sort(margins, axis=1)
        lead = ordered[:, -1] - ordered[:, -2]
        right = self.classes_[margins.argmax(axis=1)] == y
        # A tie seen once right and once wrong: a coin flip at a lead of zero, and two outcomes to fit
        # even when a small corpus gets every out-of-fold report right.
        lead, right = np.append(lead, [0.0, 0.0]), np.append(right, [True, False])
        logistic = LogisticRegression().fit(lead.reshape(-1, 1), right)
        self.lead_slope_ = float(logistic.coef_[0, 0])
        self.lead_intercept_ = float(logistic.intercept_[0])
        return self

    def confidence_from_lead(self, lead: np.ndarray) -> np.ndarray:
        return expit(self.lead_slope_ * lead + self.lead_intercept_)


def _sigmoids(estimator, margins: np.ndarray, labels: np.ndarray):
    """One sigmoid per class over its out-of-fold margins: the step CalibratedClassifierCV(ensemble=False)
    takes after its own cross_val_predict, called on ours (newer releases take the array namespace too)."""
    array_namespace = {"xp": np} if "xp" in inspect.signature(_fit_calibrator).parameters else {}
    return _fit_calibrator(estimator, margins, labels, estimator.classes_, "sigmoid", **array_namespace)


def _groups_per_class(labels, groups) -> int:
    """The fewest distinct sentences any class has."""
    pairs = set(zip(np.asarray(labels).tolist(), np.asarray(groups).tolist(), strict=True))
    return min(Counter(label for label, _ in pairs).values())


def build_pipeline() -> Pipeline:
    # The folded view carries most of the signal: it merges the many spellings
    # of one complaint. Words matter more than character n-grams, which are
    # there for typos and unseen word forms. Weights chosen by cross-validation
    # (bench/classifier_cv.py).
    features = FeatureUnion(
        [
            ("words_as_written", _words(lower)),
            ("characters_as_written", _characters(lower)),
            ("words_folded", _words(canonical)),
            ("characters_folded", _characters(canonical)),
        ],
        transformer_weights={
            "words_as_written": 0.5,
            "characters_as_written": 0.3,
            "words_folded": 1.5,
            "characters_folded": 0.7,
        },
    )
    # A linear SVM separates sparse n-grams well; sigmoid calibration turns its
    # margins into probabilities that pick the field, and the lead over the
    # runner-up gives the confidence we threshold. The sigmoids are fitted on
    # five internal folds' out-of-fold margins, and the SVM itself on the whole
    # corpus (ensemble=False): it sees every report, where an average of five
    # fold models each missed a fifth of them; cross-validation scores it a
    # little more accurate, and the worker computes one set of margins, not five.
    # C chosen by cross-validation again when the corpus grew to 19 fields: a softer margin triaged more.
    # With the boundaries better covered, C=2 beat C=1 on each of five shuffles of the folds (a tenth
    # of a point in accuracy and routed accuracy, a little less triage): a harder margin now helps.
    # A looser stopping tolerance than liblinear's default 1e-4 halves each fit; the margins move by
    # about a thousandth and no report changes field. A fixed random_state fixes liblinear's order of
    # visiting the reports, so one corpus gives one model in any process.
    model = CalibratedWithLead(LinearSVC(C=2.0, tol=1e-2, random_state=0), method="sigmoid", cv=5, ensemble=False)
    return Pipeline([("features", features), ("model", model)])


def train(examples: list[tuple[str, str]]) -> Pipeline:
    texts, labels = zip(*examples, strict=True)
    return fit(build_pipeline(), list(texts), list(labels))


def fit(pipeline: Pipeline, texts: list[str], labels: list[str]) -> Pipeline:
    return pipeline.fit(texts, labels, model__groups=rewording_groups(texts))


# Two reports whose folded words are this alike (tf-idf cosine) are one complaint written twice:
# "Mất điện từ 6 giờ sáng..." and "mat dien tu 6h sang...". Read from the pairs near this value:
# above it nearly all are rewordings.
SAME_SENTENCE_SIMILARITY = 0.6


def rewording_groups(texts) -> np.ndarray:
    """A group number per text; rewordings of one sentence share it (transitively)."""
    vectors = TfidfVectorizer(preprocessor=canonical, token_pattern=r"(?u)\b\w+\b").fit_transform(texts)
    _, groups = connected_components((vectors @ vectors.T) >= SAME_SENTENCE_SIMILARITY, directed=False)
    return groups


class Classifier:
    def __init__(self, pipeline: Pipeline, version: str):
        self.pipeline = pipeline
        self.version = version
        # The pipeline's predict_proba costs ~10 ms a text, nearly all of it input validation: the
        # same arithmetic, extracted once here, is what the worker runs (service/classify/inference.py).
        self._inference = LinearInference(pipeline)
        self._evidence_words = dict(pipeline.named_steps["features"].transformer_list)["words_folded"]

    @classmethod
    def load_or_train(cls, cache_dir: Path, *, corpus_path: Path | None = None) -> "Classifier":
        version = corpus_version(corpus_path)
        cache_file = Path(cache_dir) / f"classifier-{version}.joblib"
        try:
            return cls(joblib.load(cache_file), version)
        except FileNotFoundError:
            pass
        except Exception:  # noqa: BLE001 - a damaged or unreadable cache is only a cache: retrain
            with contextlib.suppress(OSError):
                cache_file.unlink(missing_ok=True)
        pipeline = train(load_corpus(corpus_path))
        try:
            _dump_atomically(pipeline, cache_file)
        except OSError as exc:
            # A read-only or full disk costs the next start a retraining, nothing more: keep the model.
            log.warning("classifier cache %s not written (%s): the model stays in memory only", cache_dir, exc)
        return cls(pipeline, version)

    @property
    def service_codes(self) -> list[str]:
        return list(self.pipeline.classes_)

    def predict(self, text: str, threshold: float = DEFAULT_TRIAGE_THRESHOLD) -> Prediction:
        return self.predict_many([text], threshold)[0]

    def predict_many(self, texts: Iterable[str], threshold: float = DEFAULT_TRIAGE_THRESHOLD) -> list[Prediction]:
        texts = list(texts)
        if not texts:
            return []
        views = self._inference.views(texts)
        margins = self._inference.decision_function(texts, views)
        best = self._inference.predict_proba(texts, margins=margins).argmax(axis=1)
        lead = self._inference.lead(margins, best)
        confidences = self.pipeline.named_steps["model"].confidence_from_lead(lead) * self._evidence(views)
        return [
            Prediction(
                service_code=str(self.pipeline.classes_[index]),
                confidence=float(confidence),
                triage=bool(confidence < threshold),
            )
            for index, confidence in zip(best, confidences, strict=True)
        ]

    def _evidence(self, views: list[list[str]]) -> np.ndarray:
        """1.0 when at least half the words were seen in training, falling to 0
        when none were. A text of unknown words ("asdf qwerty", emoji only, a
        language we have no reports in) gives the model nothing to go on, yet
        the class priors alone could look confident; this keeps it in triage.
        Costs nothing in cross-validation: real reports are almost all known words."""
        words = self._evidence_words
        tokenize = words.build_tokenizer()
        shares = []
        for view in self._inference.view_for(words, views):
            tokens = tokenize(view)
            known = sum(token in words.vocabulary_ for token in tokens)
            shares.append(known / len(tokens) if tokens else 0.0)
        return np.minimum(1.0, np.array(shares) / 0.5)


def _dump_atomically(pipeline: Pipeline, cache_file: Path) -> None:
    # Several workers may start together: write to a temporary name and rename,
    # so no process ever loads a half-written file.
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_file.parent, suffix=".tmp")
    os.close(handle)
    try:
        joblib.dump(pipeline, temporary)
        # mkstemp makes the file private to its writer; the model is no secret, and a cache trained by
        # another user (an image trained at build time as root) must stay readable by everyone.
        os.chmod(temporary, 0o644)
        os.replace(temporary, cache_file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
