"""Search without diacritics: what a report's folded search column holds, and how a query meets it.

Staff type street names as they can: "nguyen hue" must find "Nguyễn Huệ", "le loi" "Lê Lợi". Each
report keeps its tracking code, title, description and address folded (lowercase, no accents, đ as d)
in `reports.search_text`, written when the row is inserted (the column's default, below: whoever writes
the row, intake or a bulk load, writes the folded text with it); a query is folded the same way and
matched as one phrase: a single LIKE on a single column, which PostgreSQL's trigram index serves.
Pure functions, no I/O.
"""

import re
import unicodedata
from typing import Any

_LIKE_SPECIAL = re.compile(r"([\\%_])")
# The fields of a report searched as text, in the order they are joined.
SEARCHED_FIELDS = ("tracking_code", "title", "description", "address")


class _WithoutMarks(dict):
    """A `str.translate` table that drops combining marks (category Mn) and keeps every other character:
    filled as characters are met, so a text costs one C-level pass instead of a look-up per character
    in Python. Bounded: past `limit` characters known, the rest are decided without being kept."""

    limit = 10_000

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.category(chr(code)) == "Mn" else code
        if len(self) < self.limit:
            self[code] = kept
        return kept


_WITHOUT_MARKS = _WithoutMarks()


def _sheds_to_ascii(code: int) -> bool:
    """Decomposes to ASCII and combining marks only, as every Vietnamese letter but đ does."""
    decomposed = unicodedata.normalize("NFD", chr(code))
    return all(part.isascii() or unicodedata.category(part) == "Mn" for part in decomposed)


# A text of ASCII and such letters (or bare marks) is left with ASCII and marks only once decomposed, so
# dropping what is not ASCII drops exactly its marks, in one C-level pass instead of a look-up per character.
# (Latin-1, Latin Extended-A and B, the combining marks, Latin Extended Additional: where such letters are.)
_LATIN_BLOCKS = (*range(0x80, 0x370), *range(0x1E00, 0x1F00))
_NOT_LATIN = re.compile("[^\x00-\x7f" + "".join(chr(code) for code in _LATIN_BLOCKS if _sheds_to_ascii(code)) + "]")


def fold(text: str) -> str:
    """ "Đường Nguyễn  Huệ" -> "duong nguyen hue": lowercase, accents and đ folded, spaces collapsed."""
    # ASCII text has no đ, nothing to decompose and no mark to drop: only its spaces and case change.
    if not text.isascii():
        text = text.replace("đ", "d").replace("Đ", "D")
        decomposed = unicodedata.normalize("NFD", text)
        if _NOT_LATIN.search(text):
            text = decomposed.translate(_WITHOUT_MARKS)
        else:
            text = decomposed.encode("ascii", "ignore").decode("ascii")
    # split() breaks at the characters `\s` matches (str.isspace) and drops them at both ends.
    return " ".join(text.split()).lower()


def search_text(tracking_code: str | None, title: str | None, description: str | None, address: str | None) -> str:
    """One line per field, so a phrase never runs from one field into the next."""
    return "\n".join([fold(part) for part in (tracking_code, title, description, address) if part])


def like_pattern(query: str) -> str | None:
    """The LIKE pattern (escape character `\\`) of a query, or None when nothing is left to look for."""
    folded = _LIKE_SPECIAL.sub(r"\\\1", fold(query))
    return f"%{folded}%" if folded else None


def on_insert(context: Any) -> str:
    """The column default: the folded text of the row being inserted."""
    row = context.get_current_parameters()
    return search_text(*(row.get(field) for field in SEARCHED_FIELDS))
