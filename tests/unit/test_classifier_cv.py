"""The classifier's cross-validation (bench/classifier_cv.py) scores every report with a model
that saw neither it nor any rewording of it: the corpus writes one complaint several ways."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from service.classify.model import DEFAULT_TRIAGE_THRESHOLD, load_corpus

_SPEC = importlib.util.spec_from_file_location(
    "classifier_cv", Path(__file__).resolve().parents[2] / "bench" / "classifier_cv.py"
)
classifier_cv = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(classifier_cv)


def test_rewordings_of_one_report_share_a_group_and_other_reports_do_not():
    texts = [
        "Mất điện từ 6 giờ sáng tới giờ chưa có lại, khu phố 3 phường Tân Định",
        "mat dien tu 6 gio sang toi gio chua co lai, khu pho 3",
        "Ổ gà lớn giữa đường Cộng Hòa, xe máy té liên tục",
        "o ga lon giua duong cong hoa, xe may te lien tuc",
        "Rác tồn đọng đầu hẻm ba ngày không ai thu gom",
    ]
    groups = classifier_cv.same_sentence_groups(np.array(texts, dtype=object))
    assert groups[0] == groups[1]
    assert groups[2] == groups[3]
    assert len({groups[0], groups[2], groups[4]}) == 3


def test_the_corpus_twins_written_without_diacritics_are_grouped_with_their_original():
    examples = load_corpus()
    texts = np.array([text for text, _ in examples], dtype=object)
    groups = dict(zip(texts, classifier_cv.same_sentence_groups(texts)))
    for original, twin in [
        ("lấn chiếm vỉa hè", "lan chiem via he"),
        ("KHÔNG CÓ ĐÈN ĐƯỜNG", "khong co den duong"),
        ("xây sai phép", "xay sai phep"),
    ]:
        assert groups[original] == groups[twin]
    assert groups["lấn chiếm vỉa hè"] != groups["xây sai phép"]


# What the grouped cross-validation measured when the corpus last changed (bench/RESULTS.md), three
# shuffles of the folds pooled: 0.929 accuracy, 0.972 on what is routed, 13.1 % triaged (the shuffles
# alone: 0.928-0.930, 0.969-0.975, 12.8-13.6 %). The floors sit just under them, so a change that loses
# ground fails here, not later at a dispatcher's desk.
ACCURACY_FLOOR, ROUTED_ACCURACY_FLOOR, TRIAGE_CEILING = 0.926, 0.970, 0.135

# The targets.
TARGET_ACCURACY, TARGET_ROUTED_ACCURACY, TARGET_TRIAGE = 0.92, 0.97, 0.15


@pytest.fixture(scope="module")
def cross_validated():
    """accuracy, routed accuracy, triage rate: the bench's own 5-fold grouped cross-validation, over the
    bench's shuffles of the folds pooled."""
    examples = load_corpus()
    texts = np.array([text for text, _ in examples], dtype=object)
    labels = np.array([label for _, label in examples])
    scored_labels, predicted, confidence = classifier_cv.cross_validated_predictions(
        texts, labels, folds=5, repeats=classifier_cv.REPEATS
    )
    return classifier_cv.summary(predicted == scored_labels, confidence, DEFAULT_TRIAGE_THRESHOLD)


# Fifteen trainings on the whole corpus (about 100 s of CPU), one process per core.
@pytest.mark.timeout(900)
def test_classifier_keeps_its_cross_validated_accuracy_routed_accuracy_and_triage_rate(cross_validated):
    accuracy, routed_accuracy, triage_rate = cross_validated
    assert accuracy >= ACCURACY_FLOOR
    assert routed_accuracy >= ROUTED_ACCURACY_FLOOR
    assert triage_rate <= TRIAGE_CEILING


@pytest.mark.timeout(900)
def test_classifier_meets_the_targets_under_grouped_cross_validation(cross_validated):
    accuracy, routed_accuracy, triage_rate = cross_validated
    assert accuracy >= TARGET_ACCURACY
    assert routed_accuracy >= TARGET_ROUTED_ACCURACY
    assert triage_rate <= TARGET_TRIAGE

