"""The classifier's fast path decides exactly what the scikit-learn pipeline it was extracted from decides."""

import numpy as np
import pytest

from service.classify.model import Classifier, Prediction, load_corpus
from tests.conftest import trained_model_cache

ODD_INPUTS = [
    "",
    " ",
    "\n\t",
    "😀😀🔥🔥",
    "🚧 đường bị sụt lún 🚧",
    "asdf qwerty zxcv",
    "den duong truoc nha toi bi hu ca tuan nay",  # no diacritics
    "ĐÈN ĐƯỜNG HƯ, TỐI THUI",  # all capitals
    "nc máy đục wá, ko dám nấu ăn",  # teen code
    "Street light broken on Nguyen Hue, the whole block is dark",
    "q1 p12 hcm",
    "a",
    "1234567890",
    "ngập " * 400,  # long, repetitive
    "Đường\u0301 ngập",  # a stray combining accent
]


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier.load_or_train(trained_model_cache())


def reference_predictions(classifier: Classifier, texts: list[str]) -> list[Prediction]:
    """From scikit-learn's own calls: the pipeline's predict_proba picks the field; the linear model's
    decision_function gives its lead over the runner-up, which the model turns into a confidence, times
    the share of known words."""
    pipeline = classifier.pipeline
    probabilities = pipeline.predict_proba(texts)
    model = pipeline.named_steps["model"]
    (calibrated,) = model.calibrated_classifiers_
    margins = calibrated.estimator.decision_function(pipeline.named_steps["features"].transform(texts))
    words = dict(pipeline.named_steps["features"].transformer_list)["words_folded"]
    preprocess, tokenize = words.build_preprocessor(), words.build_tokenizer()
    predictions = []
    for text, row, margin in zip(texts, probabilities, margins):
        best = row.argmax()
        lead = margin[best] - np.delete(margin, best).max()
        tokens = tokenize(preprocess(text))
        share = sum(token in words.vocabulary_ for token in tokens) / len(tokens) if tokens else 0.0
        confidence = model.confidence_from_lead(np.array([lead]))[0] * min(1.0, share / 0.5)
        predictions.append(Prediction(str(pipeline.classes_[best]), confidence, False))
    return predictions


def corpus_sample() -> list[str]:
    texts = [text for text, _ in load_corpus()]
    return texts[::7]  # every category, a few hundred texts


def test_fast_probabilities_equal_the_pipelines(classifier):
    texts = corpus_sample() + ODD_INPUTS
    expected = classifier.pipeline.predict_proba(texts)
    np.testing.assert_allclose(classifier._inference.predict_proba(texts), expected, rtol=0, atol=1e-9)


@pytest.mark.parametrize("batch", [False, True], ids=["one at a time", "in one batch"])
def test_fast_path_gives_the_pipelines_category_and_confidence(classifier, batch):
    texts = corpus_sample() + ODD_INPUTS
    expected = reference_predictions(classifier, texts)
    actual = classifier.predict_many(texts) if batch else [classifier.predict(text) for text in texts]
    for text, fast, reference in zip(texts, actual, expected, strict=True):
        assert fast.service_code == reference.service_code, text
        assert fast.confidence == pytest.approx(reference.confidence, abs=1e-9), text


def test_text_without_known_words_has_no_confidence(classifier):
    for text in ("", "😀😀🔥🔥", "asdf qwerty zxcv"):
        assert classifier.predict(text).confidence == 0.0
        assert classifier.predict(text).triage
