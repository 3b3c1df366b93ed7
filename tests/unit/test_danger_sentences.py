"""Danger detection measured on hand-written reports (tests/unit/data/danger_sentences.txt).

The first part of the file was written with the rules and tuned against; the held-out part was
written afterwards and never used to change them, so its figures are the honest ones (README).
"""

from pathlib import Path

import pytest

from service.classify.priority import assess_priority

SENTENCES = Path(__file__).parent / "data" / "danger_sentences.txt"
HELD_OUT_MARK = "# --- held out"


def labelled(text: str) -> list[tuple[bool, str]]:
    return [(line[0] == "U", line[4:].strip()) for line in text.splitlines() if line[:4] in ("U | ", "- | ")]


def figures(rows: list[tuple[bool, str]]) -> tuple[float, float, list[str]]:
    """Precision, recall, and the sentences judged wrongly."""
    wrong, true_positive, predicted, actual = [], 0, 0, 0
    for dangerous, text in rows:
        urgent = assess_priority(text, "normal")[0] == "urgent"
        true_positive += dangerous and urgent
        predicted += urgent
        actual += dangerous
        if urgent != dangerous:
            wrong.append(("missed: " if dangerous else "false alarm: ") + text)
    return true_positive / predicted, true_positive / actual, wrong


DEVELOPMENT, HELD_OUT = (labelled(part) for part in SENTENCES.read_text(encoding="utf-8").split(HELD_OUT_MARK))


def test_there_are_at_least_two_hundred_sentences_half_of_them_dangerous():
    rows = DEVELOPMENT + HELD_OUT
    dangerous = sum(flag for flag, _ in rows)
    assert len(rows) >= 200
    assert 0.45 <= dangerous / len(rows) <= 0.55
    assert len({text for _, text in rows}) == len(rows)


def test_danger_is_found_in_the_sentences_it_was_written_with():
    precision, recall, wrong = figures(DEVELOPMENT)
    assert precision >= 0.98 and recall >= 0.98, wrong


def test_danger_is_found_in_sentences_written_after_the_rules():
    precision, recall, wrong = figures(HELD_OUT)
    assert precision >= 0.95 and recall >= 0.80, wrong


@pytest.mark.parametrize(
    "text",
    [
        "cây đổ đè ng đi đg mn ơi",  # teen code: ng = người, đg = đường
        "cay do de nguoi di bo",  # no diacritics
        "chay nha o hem 18 mn oi",
        "xe container dam xe may, nguoi lai tu vong tai cho",
        "ngap toi co roi, can cuu ho gap",
    ],
)
def test_danger_written_without_diacritics_or_in_teen_code_is_urgent(text):
    assert assess_priority(text, "normal")[0] == "urgent"


@pytest.mark.parametrize(
    "text",
    [
        "Quán phở cháy hàng từ 9 giờ sáng, xe đậu kín vỉa hè",  # sold out
        "Cuối tháng cháy túi rồi mà phí gửi xe còn tăng",  # broke
        "Thanh niên đi cháy phố tới 2 giờ sáng, nẹt pô inh ỏi",  # a night out
        "Dạo này tôi đâm ra lo vì khói bụi công trình",  # figurative "đâm"
        "Ông hàng xóm đâm đơn kiện vì tiếng ồn karaoke",
        "Rễ cây đâm xuyên vỉa hè, gạch lát bị bong lên",
        "Tin đồn sập cầu là sai, cầu vẫn đi bình thường",
    ],
)
def test_common_false_alarms_are_not_urgent(text):
    assert assess_priority(text, "low") == ("low", None)
