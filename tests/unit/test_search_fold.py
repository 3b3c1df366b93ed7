"""Search text is folded the same whoever writes it: accents, đ and case gone, every other character kept."""

import unicodedata

from service.reports.search import fold, search_text


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
