"""Text normalisation for Vietnamese citizen reports.

Residents type the same complaint in many ways: with full diacritics, without
them (old phones, foreign keyboards), in teen code ("ko dc", "wá") or in
English. The classifier sees two views of every report: the lowercased text as
written, and a canonical form where teen code is expanded and diacritics are
folded away, so "đèn đường hư", "den duong hu" and "đèn đg hư" meet in one
place. Pure functions, no I/O.
"""

import re
import unicodedata

# Teen-code and chat abbreviations -> the word they stand for. Matched as whole
# tokens only, so "k" in "50k" or "ng" inside "ngập" is never touched.
TEEN_CODE = {
    # Not "hem" or "hong": unaccented they are "hẻm" (alley) and "hỏng" (broken).
    "ko": "không", "k": "không", "kh": "không", "khg": "không",
    "hok": "không", "hông": "không",
    "dc": "được", "đc": "được",
    "j": "gì", "ji": "gì",
    "ng": "người", "ngta": "người ta",
    "đg": "đường", "dg": "đường",
    "wá": "quá", "wa": "quá", "qá": "quá",
    "mn": "mọi người", "mng": "mọi người",
    "vs": "với",
    "r": "rồi", "rùi": "rồi", "roai": "rồi",
    "z": "vậy", "zậy": "vậy", "dzậy": "vậy",
    "bik": "biết", "bít": "biết", "bit": "biết",
    "ntn": "như thế nào",
    "bt": "bình thường",
    "sdt": "số điện thoại", "sđt": "số điện thoại",
    "đt": "điện thoại", "dt": "điện thoại",
    "cx": "cũng", "cg": "cũng",
    "ms": "mới", "trc": "trước", "lun": "luôn", "nhìu": "nhiều", "nhiu": "nhiều",
    "thik": "thích", "iu": "yêu", "wen": "quen",
    "tp": "thành phố", "tphcm": "thành phố hồ chí minh", "hcm": "hồ chí minh",
    "q": "quận", "p": "phường", "ubnd": "ủy ban nhân dân",
}

_TOKEN = re.compile(r"\w+")
# "q1", "q.3", "p12": district and ward shorthand, expanded so they share
# features with "quận 1" / "phường 12".
_DISTRICT = re.compile(r"\b([qp])\.?(\d{1,2})\b")
_REPEATED_LETTER = re.compile(r"(\w)\1{2,}")


def lower(text: str) -> str:
    """Lowercased NFC text: the 'as written' view."""
    return unicodedata.normalize("NFC", text).lower()


def expand_teen_code(text: str) -> str:
    """Replace chat abbreviations in already-lowercased text with full words."""
    text = _DISTRICT.sub(lambda m: ("quận " if m.group(1) == "q" else "phường ") + m.group(2), text)
    # "quáaaa", "ngậppppp": shouting stretches letters; two are enough to keep.
    text = _REPEATED_LETTER.sub(r"\1\1", text)
    return _TOKEN.sub(lambda m: TEEN_CODE.get(m.group(0), m.group(0)), text)


def fold(text: str) -> str:
    """Strip Vietnamese diacritics: "đường ngập" -> "duong ngap"."""
    decomposed = unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D"))
    return "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn")


def canonical(text: str) -> str:
    """The folded view: lowercased, teen code expanded, then accents removed."""
    return fold(expand_teen_code(lower(text)))
