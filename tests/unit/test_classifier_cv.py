"""The classifier's cross-validation (bench/classifier_cv.py) scores every report with a model
that saw neither it nor any rewording of it: the corpus writes one complaint several ways."""

import importlib.util
from pathlib import Path

import numpy as np

from service.classify.model import load_corpus

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
