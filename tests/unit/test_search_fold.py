"""Search text is folded the same whoever writes it: accents, đ and case gone, every other character kept."""

import random
import re
import sys
import unicodedata

from service.reports.search import _WITHOUT_MARKS, fold, search_text


def folded_one_character_at_a_time(text: str) -> str:
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return " ".join("".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn").split()).lower()


def test_vietnamese_street_names_fold_to_what_staff_type():
    assert fold("Đường Nguyễn  Huệ") == "duong nguyen hue"
    assert fold("  Lê Lợi, Phường Bến Thành ") == "le loi, phuong ben thanh"
    assert search_text("7K3P-9QX2", None, "Cống bị nghẹt", "12 Lê Lợi") == "7k3p-9qx2\ncong bi nghet\n12 le loi"


def test_only_combining_marks_are_dropped_in_any_script():
    # Every character of the Basic Multilingual Plane, in slices: marks of every script go, the rest stays.
    characters = [chr(code) for code in range(0x10000) if not 0xD800 <= code < 0xE000]
    for start in range(0, len(characters), 4096):
        text = "".join(characters[start : start + 4096])
        assert fold(text) == folded_one_character_at_a_time(text), hex(start)
    assert fold("a\U0001d167b 😀") == "ab 😀"  # a musical combining mark beyond the BMP; an emoji stays


def fold_as_first_written(text: str) -> str:
    """fold before it had a path of its own for ASCII text: every text decomposed, then a regex for spaces."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return re.sub(r"\s+", " ", decomposed.translate(_WITHOUT_MARKS)).strip().lower()


# Every character str.isspace() knows (ASCII's \x1c-\x1f among them), and look-alikes that are not spaces.
SPACES = [chr(code) for code in range(sys.maxunicode + 1) if chr(code).isspace()]
NOT_SPACES = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u180e", "\x00", "\x7f", "-", "_"]
WORDS = [
    "Đường",
    "đường",
    "Duong",
    "duong",
    "Nguyễn",
    "NGUYỄN",
    "Huệ",
    "Lê",
    "Lợi",
    "Phường",
    "Bến",
    "Thành",
    "Quận",
    "Thủ",
    "Đức",
    "ĐĐđđ",
    "cống",
    "nghẹt",
    "ổ",
    "gà",
    "Cafe",
    "café",
    "cafe\u0301",
    "Ðiện",
    "İstanbul",
    "ǅ",
    "ﬁ",
    "Ω",
    "Å",
    "ñ",
    "12/3A",
    "7K3P-9QX2",
    "%_\\",
    "😀",
    "a\U0001d167b",
    "Ồ",
    "ỡ",
    "Ỵ",
    "ẞ",
    "ς",
]


def generated_texts(count: int, seed: int):
    draw = random.Random(seed)
    ascii_letters = [chr(code) for code in range(128)]
    for _ in range(count):
        parts = []
        for _ in range(draw.randint(0, 12)):
            kind = draw.random()
            if kind < 0.45:
                word = draw.choice(WORDS)
                parts.append(unicodedata.normalize("NFD", word) if draw.random() < 0.2 else word)
            elif kind < 0.65:
                parts.append("".join(draw.choices(ascii_letters, k=draw.randint(1, 6))))
            elif kind < 0.8:
                parts.append("".join(draw.choices(SPACES, k=draw.randint(1, 3))))
            elif kind < 0.9:  # anything from the Latin, Greek and Cyrillic blocks and their marks
                parts.append("".join(chr(draw.randrange(0x80, 0x2100)) for _ in range(draw.randint(1, 4))))
            else:
                parts.append(draw.choice(NOT_SPACES))
        text = "".join(parts)
        yield text
        # The same text with its accents gone (often plain ASCII then), as many citizens type it.
        yield fold_as_first_written(text)


def test_fold_answers_as_first_written_for_ascii_and_vietnamese_text_with_every_kind_of_space():
    texts = list(generated_texts(20_000, seed=16))
    texts += SPACES + NOT_SPACES + ["", " ", "\t\n\x1c\x1d\x1e\x1fa\x1f", "\u00a0Lê\u3000Lợi\u2028", "x\x85y"]
    assert any(text.isascii() for text in texts) and any(not text.isascii() for text in texts)
    for text in texts:
        assert fold(text) == fold_as_first_written(text), repr(text)


def test_search_text_answers_as_first_written():
    draw = random.Random(3)
    texts = [*generated_texts(2_000, seed=4), None, ""]
    for _ in range(5_000):
        fields = [draw.choice(texts) for _ in range(4)]
        expected = "\n".join(fold_as_first_written(part) for part in fields if part)
        assert search_text(*fields) == expected, fields
