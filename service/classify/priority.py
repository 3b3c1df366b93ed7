"""Spot reports of immediate danger so they run on the urgent (wall-clock) SLA.

Patterns are written against accent-folded text ("cây đổ" -> "cay do") so reports typed
without diacritics match too. Folding merges different words (cháy fire / chạy run /
chảy flow / chay vegetarian; sập collapse / sắp about to; đè crush / để let), so a
pattern can name groups that must, when the writer did use diacritics, carry the
intended ones. Folding keeps one character per character, so a span in the folded
text is the same span in the original.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from service.classify.text import expand_teen_code

URGENT = "urgent"


@functools.lru_cache(maxsize=4096)
def _fold_char(char: str) -> str:
    lowered = char.lower()
    if lowered == "đ":
        return "d"
    # lower() may give two characters ("İ" -> "i̇"); the base letter is the first.
    return unicodedata.normalize("NFD", lowered)[0]


def fold_accents(text: str) -> str:
    """Lower-case, strip Vietnamese diacritics, đ -> d; same length as NFC(text)."""
    return "".join(map(_fold_char, unicodedata.normalize("NFC", text)))


@dataclass(frozen=True)
class _Cue:
    pattern: re.Pattern[str]
    # group name -> the accented spellings that group may be written with
    accents: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # True: the words must be written with those diacritics (bare "chay" is too ambiguous)
    strict: bool = False
    # a hit is void when text right before / after it matches these (folded)
    not_before: re.Pattern[str] | None = None
    not_after: re.Pattern[str] | None = None


@dataclass(frozen=True)
class _Signal:
    description: str
    cues: tuple[_Cue, ...]  # any one of these...
    with_any: tuple[_Cue, ...] = ()  # ...and, when given, one of these too

    @functools.cached_property
    def may_hit(self) -> re.Pattern[str]:
        """Matches somewhere exactly when one of the cues' patterns does: most texts show no danger,
        and one search tells so where a search per cue would cost several times more."""
        return _any_of(self.cues)

    @functools.cached_property
    def may_hit_with(self) -> re.Pattern[str]:
        return _any_of(self.with_any)


_NAMED_GROUP = re.compile(r"\(\?P<\w+>")


def _any_of(cues: tuple[_Cue, ...]) -> re.Pattern[str]:
    # Group names repeat across cues: in the alternation the groups are plain ones.
    return re.compile("|".join("(?:" + _NAMED_GROUP.sub("(", cue.pattern.pattern) + ")" for cue in cues))


def _cue(pattern: str, *, strict: bool = False, not_before: str = "", not_after: str = "", **accents: str) -> _Cue:
    """A compiled cue; keyword `group="spelling|spelling"` names the accents of a group."""
    return _Cue(
        pattern=re.compile(pattern),
        accents=tuple((group, tuple(spellings.split("|"))) for group, spellings in accents.items()),
        strict=strict,
        not_before=re.compile(not_before + r"$") if not_before else None,
        not_after=re.compile(r"^" + not_after) if not_after else None,
    )


# "không có ai bị thương", "chưa bị", "no one was injured", "not a fire": a negator
# followed only by filler words up to the hit.
_NEGATION = re.compile(
    r"\b(?P<neg>khong|ko|k|chang|chua|tin don|no|not|never|without|nobody|none)"
    r"(?:\s+(?:co|ai|nguoi|nao|bi|phai|la|he|thay|one|body|was|were|is|are|anyone|any|a|an|the|sign|signs|of))*\s*$"
)
_NEGATOR_SPELLINGS = ("không", "chẳng", "chưa", "tin đồn")  # "nổ", "chứa", "nó" are not negations

# Only a few words may sit between "đè/trúng" and the victim ("đè chết 2 người"), so
# "cây đổ xuống đường, xe không qua được" (a blocked road) is not a crushed vehicle.
# "trúng đầu một bác": the head is where it hit, the person comes after.
_COUNT = r"(?:(?:chet|trung|len|chiec|mot|hai|ba|nhieu|cac|may|vai|dau|\d+)\s+){0,2}"
_VICTIM = (
    r"(?:nguoi|xe|o to|oto|taxi|ai|em be|tre em|hoc sinh|bac|cu gia|ba cu|cong nhan|shipper|tai xe"
    r"|car|vehicle|person|people|someone|child|motorbike|bike|pedestrian|bus)s?"
)
_STRUCTURE = r"(?:nha|tuong|cau|tran|mai|gian giao|cong trinh|chung cu|toa nha|ham|bo ke|ke|cong|mat duong|via he)"
_STRUCTURE_EN = r"(?:building|house|wall|bridge|roof|ceiling|scaffolding|structure)s?"
# Before "cháy": a lamp or fuse (burnt out; may be named: "bóng đèn cầu thang chung cư"),
# or fire-prevention / risk / crispy-rice wording.
_LAMP = r"(?:bong den|den duong|den chieu sang|den tin hieu|den giao thong|cau chi|aptomat|cong to)(?:\s+\w+){0,4}?"
# "vụ cháy năm ngoái": a fire of the past is context, not an emergency.
_IN_THE_PAST = r"(?:\s+\w+){0,3}?\s+(?:nam ngoai|nam truoc|thang truoc|tuan truoc|hom truoc|truoc day)\b"
_NOT_FIRE_BEFORE = r"(?:" + _LAMP + r"|den|nguy co(?:\s+gay)?|phong|chua|bao|chong|com|nang)"

# Chest-, neck- or roof-deep water is dangerous by itself; knee (đầu gối) or ankle
# (cổ chân) deep is an everyday flooded street, and so is "ngập sâu" alone.
_DANGEROUS_DEPTH_VI = _cue(
    r"\bngap\s+(?:\w+\s+){0,2}?(?:toi|den|qua|ngang)\s+(?:\w+\s+)?"
    r"(?P<hit>nguc|co|dau|noc|mai nha)\b(?!\s+(?:goi|chan))",
    hit="ngực|cổ|đầu|nóc|mái nhà",
)
_DANGEROUS_DEPTH_EN = _cue(r"\b(?:chest|neck|shoulder)[\s-]+deep\b|\bwater up to (?:\w+\s+)?(?:chest|neck)\b")

_SIGNALS: tuple[_Signal, ...] = (
    _Signal(
        "fallen tree on people or vehicles",
        (
            _cue(
                r"\b(?:cay|nhanh|canh)(?:\s+\w+){0,5}?\s+(?:do|nga|gay|bat goc|troc goc|roi|sap)\b"
                r"(?:\s+\w+){0,3}?\s+(?P<hit>de|trung|vao|len)\s+" + _COUNT + _VICTIM + r"\b",
                hit="đè|trúng|vào|lên",
            ),
            _cue(r"\bcay(?:\s+\w+){0,3}?\s+(?P<hit>de)\s+" + _COUNT + _VICTIM + r"\b", hit="đè"),
            _cue(
                r"\b(?:tree|branch)\w*(?:\W+\w+){0,3}?\W+(?:fell|fallen|falling|fall|toppled|collapsed|came down|crashed)\b"
                r"(?:\W+\w+){0,2}?\W+(?:on|onto|into|crushing|hitting|hit|struck|trapping)\W+(?:\w+\W+){0,2}?"
                + _VICTIM
                + r"\b"
            ),
            _cue(
                r"\b(?:tree|branch)\w*\W+(?:\w+\W+){0,2}?(?:hit|struck|crushed|landed on)\W+(?:\w+\W+){0,2}?"
                + _VICTIM
                + r"\b"
            ),
            _cue(
                r"\b(?:fallen|falling|uprooted)\s+(?:tree|branch)\w*\W+(?:\w+\W+){0,2}?"
                r"(?:on|onto|crushing|crushed|hitting|hit|trapping|trapped)\W+(?:\w+\W+){0,2}?" + _VICTIM + r"\b"
            ),
        ),
    ),
    _Signal(
        "live wire or electrical sparks",
        (
            _cue(
                r"\bday dien\s+(?:\w+\s+){0,2}?(?P<hit>dut|rot|sa xuong|toe lua|xet lua|phat tia lua)\b",
                hit="đứt|rớt|sà xuống|tóe lửa|toé lửa|xẹt lửa|phát tia lửa",
            ),
            # "rơi" only with its accent: bare "roi" is mostly "rối", tangled wires.
            _cue(r"\bday dien\s+(?:\w+\s+){0,2}?(?P<hit>roi)\b", strict=True, hit="rơi"),
            _cue(r"\bdut day dien\b"),
            _cue(r"\bchap (?:dien|chay)\b"),
            _cue(r"\b(?:dien giat(?! minh)|giat dien|tia lua dien|ro ri dien|ro dien)\b"),  # "giật mình": startled
            _cue(r"\b(?P<hit>no)\s+(?:tru|cot|tram|tu|binh|day)\s+dien\b", strict=True, hit="nổ"),
            _cue(r"\b(?:tru|cot) dien\s+(?:bi\s+(?:\w+\s+){0,2}?)?(?P<hit>do|nga|gay)\b", hit="đổ|ngã|gãy"),
            _cue(
                r"\b(?:live|exposed|downed|fallen|snapped|broken) (?:power |electric(?:al)? )?"
                r"(?:wire|line|cable)s?\b"
            ),
            _cue(
                r"\b(?:power|electric(?:al)?) (?:wire|line|cable)s? (?:is |are )?"
                r"(?:down|fallen|snapped|broken|sparking)\b"
            ),
            _cue(r"\b(?:sparks|sparking|electrocut\w*|electric shock|short circuit)\b"),
        ),
    ),
    _Signal(
        "gas leak",
        (
            _cue(r"\bro(?: ri)?\s+(?:khi\s+)?(?P<hit>gas|ga)\b", hit="ga"),  # "ga", not "gà"
            _cue(r"\bro ri khi\b"),
            _cue(r"\b(?:xi|mui)\s+(?:khi\s+)?(?P<hit>gas|ga)\b", hit="ga"),  # not "xì gà", a cigar
            _cue(
                r"\b(?:gas|binh ga|binh gas)\s+(?:\w+\s+){0,3}?(?:bi\s+)?(?P<hit>ro ri|ro|xi|no)\b",
                hit="rò rỉ|rò|xì|nổ",
            ),
            _cue(r"\b(?:gas leak\w*|leaking gas|smell\w* (?:of )?gas|gas smell)\b"),
        ),
    ),
    _Signal(
        "fire",
        (
            _cue(r"\b(?:boc chay|hoa hoan|chay lon|chay du doi|ngon lua|bien lua|khoi lua|lua boc|lua chay)\b"),
            _cue(r"\b(?:dam chay|vu chay)\b", not_after=_IN_THE_PAST),
            # Unaccented "chay nha": nobody "runs a house", so the place makes it a fire.
            _cue(
                r"\b(?P<hit>chay)\s+(?:nha|can ho|xuong|kho|cho|chung cu|toa nha|quan)\b",
                hit="cháy",
            ),
            _cue(
                # For text typed without accents; no "cho": "cho dang chay" is a running dog.
                r"\b(?P<place>nha|can ho|xuong|kho|chung cu|toa nha)\s+(?:bi|dang|da)\s+(?P<hit>chay)\b",
                place="nhà|căn hộ|xưởng|kho|chung cư|tòa nhà|toà nhà",
                hit="cháy",
                not_before=r"\b" + _LAMP + r"\s+",
            ),
            # Bare "cháy" only when written with its accent, and not a burnt-out bulb, blown
            # fuse, crispy rice, fire-prevention or "risk of fire" wording.
            _cue(
                r"\b(?P<hit>chay)\b",
                strict=True,
                hit="cháy",
                not_before=r"\b" + _NOT_FIRE_BEFORE + r"\s+(?:(?:bi|da|lai|hay|cu|vua|moi)\s+){0,2}",
                # Burnt bulbs and fuses; "cháy hàng / vé / túi / phố / hết mình / da / khét món": sold out,
                # broke, a night out, sunburn, burnt food.
                not_after=r"(?:\s+(?:bong|den|cau chi|aptomat|nang|hang|ve|tui|pho|het minh|da|show"
                r"|khet\s+(?:mon|do an|com|thit|noi|chao))\b|" + _IN_THE_PAST + ")",
            ),
            _cue(
                r"\b(?:fire|on fire|caught fire|blaze|flames)\b",
                not_before=r"\b(?:risk of|danger of)\s+",
                not_after=r"\s+(?:hydrant|alarm|extinguisher|station|exit|escape|drill|hazard|risk|safety)\b",
            ),
        ),
    ),
    _Signal(
        "deep flood or people trapped by water",
        (
            _DANGEROUS_DEPTH_VI,
            _DANGEROUS_DEPTH_EN,
            _cue(r"\b(?:ngap|lu lut|lu quet|nuoc lu|trieu cuong|flood\w*)\b"),
        ),
        with_any=(
            _cue(r"\b(?:mac ket|ket lai|ket trong|khong the thoat|cau cuu|cuu ho|trapped|stranded|need\w* rescue)\b"),
            _DANGEROUS_DEPTH_VI,
            _DANGEROUS_DEPTH_EN,
        ),
    ),
    _Signal(
        "collapsed structure",
        (
            _cue(r"\b(?P<hit>sap)\s+(?:(?:buc|can|mot|ca|doan|nhip|phan|mang|lo)\s+)?" + _STRUCTURE + r"\b", hit="sập"),
            _cue(
                r"\b" + _STRUCTURE + r"\s+(?:(?:bi|da|vua|dot ngot|bat ngo)\s+){0,2}(?P<hit>do sap|sap|sup)\b"
                r"(?!\s+(?:xuong cap|xep|hoan thanh|toi|den))",  # "sắp xuống cấp / hoàn thành": about to
                hit="đổ sập|sập|sụp",
            ),
            # "tường nhà bên cạnh đổ sập": words may come between only before "bị sập" or "đổ sập".
            _cue(
                r"\b" + _STRUCTURE + r"(?:\s+\w+){1,3}?\s+(?:(?:bi|da)\s+(?P<hit>sap|sup)|(?P<fell>do sap))\b"
                r"(?!\s+(?:xuong cap|xep))",
                hit="sập|sụp",
                fell="đổ sập",
            ),
            _cue(r"\b(?:sup|sut) lun\b(?:\s+\w+){0,4}?\s+(?:nuot|lot|roi|sap)\s+(?:\w+\s+){0,2}?" + _VICTIM + r"\b"),
            _cue(r"\bho tu than\b|\bsinkhole\b"),
            _cue(
                r"\b" + _STRUCTURE_EN + r"(?:\s+\w+){0,4}?\s+(?:has\s+|have\s+|had\s+)?"
                r"(?:collapsed|caved in|fell down|came down)\b"
            ),
            _cue(r"\bcollapsed\s+(?:\w+\s+)?" + _STRUCTURE_EN + r"\b"),
        ),
    ),
    _Signal(
        "traffic accident with injuries",
        (
            _cue(
                r"\b(?:tai nan|va cham|lat xe|bi tong|xe tong|tong vao|(?P<hit>dung) xe"
                r"|accident|crash\w*|collision|collided|knocked down|run over)\b",
                hit="đụng",  # not "dừng xe", stopping
            ),
            # A vehicle ramming someone; the injury words below keep a figurative "đâm" ("đâm ra lo") out.
            _cue(r"\b(?P<ram>dam|tong)\s+(?:(?:vao|vo|phai|trung|chet)\s+)?" + _VICTIM + r"\b", ram="đâm|tông"),
        ),
        with_any=(
            _cue(
                r"\b(?:bi thuong|trong thuong|thuong nang|thuong vong|bat tinh|chay mau|mau chay|cap cuu|tu vong|thiet mang"
                r"|injur\w*|hurt|bleeding|unconscious|ambulance|killed|dead)\b"
            ),
        ),
    ),
)


def _written_as(original: str, spellings: tuple[str, ...], strict: bool) -> bool:
    """Was this word meant as one of `spellings`? Unaccented words are taken on trust unless strict."""
    word = original.lower()
    if word in spellings:
        return True
    return not strict and fold_accents(word) == word


def _negated(folded: str, original: str, start: int) -> bool:
    found = _NEGATION.search(folded, max(0, start - 60), start)
    if found is None:
        return False
    written = original[found.start("neg") : found.end("neg")]
    return _written_as(written, _NEGATOR_SPELLINGS, strict=False)


def _first_hit(cue: _Cue, folded: str, original: str) -> str | None:
    for match in cue.pattern.finditer(folded):
        if not all(
            _written_as(original[match.start(group) : match.end(group)], spellings, cue.strict)
            for group, spellings in cue.accents
            if match.group(group) is not None
        ):
            continue
        if cue.not_before and cue.not_before.search(folded[max(0, match.start() - 60) : match.start()]):
            continue
        if cue.not_after and cue.not_after.search(folded[match.end() : match.end() + 30]):
            continue
        if _negated(folded, original, match.start()):
            continue
        return original[match.start() : match.end()]
    return None


def _any_hit(cues: tuple[_Cue, ...], folded: str, original: str) -> str | None:
    return next((hit for cue in cues if (hit := _first_hit(cue, folded, original)) is not None), None)


def assess_priority(text: str, category_default: str) -> tuple[str, str | None]:
    """("urgent", what was spotted) when the report describes immediate danger, else (category_default, None).

    Teen code ("cây đổ đè ng", "ko ai bị thương") is read a second time expanded, when the text as
    written showed nothing."""
    original = unicodedata.normalize("NFC", text)
    if (found := _spot(original)) is None:
        expanded = expand_teen_code(original.lower())
        if expanded != original.lower():
            found = _spot(expanded)
    return (URGENT, found) if found else (category_default, None)


def _spot(original: str) -> str | None:
    folded = fold_accents(original)
    for signal in _SIGNALS:
        if signal.may_hit.search(folded) is None:
            continue
        hit = _any_hit(signal.cues, folded, original)
        if hit is None or (
            signal.with_any
            and (signal.may_hit_with.search(folded) is None or _any_hit(signal.with_any, folded, original) is None)
        ):
            continue
        return f'{signal.description}: "{hit}"'
    return None
