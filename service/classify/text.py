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
    "ko": "không",
    "k": "không",
    "kh": "không",
    "khg": "không",
    "hok": "không",
    "hông": "không",
    "dc": "được",
    "đc": "được",
    "j": "gì",
    "ji": "gì",
    "ng": "người",
    "ngta": "người ta",
    "đg": "đường",
    "dg": "đường",
    "wá": "quá",
    "wa": "quá",
    "qá": "quá",
    "mn": "mọi người",
    "mng": "mọi người",
    "vs": "với",
    "r": "rồi",
    "rùi": "rồi",
    "roai": "rồi",
    "z": "vậy",
    "zậy": "vậy",
    "dzậy": "vậy",
    "bik": "biết",
    "bít": "biết",
    "ntn": "như thế nào",
    "bt": "bình thường",
    "sdt": "số điện thoại",
    "sđt": "số điện thoại",
    "đt": "điện thoại",
    "dt": "điện thoại",
    "cx": "cũng",
    "cg": "cũng",
    "ms": "mới",
    "trc": "trước",
    "lun": "luôn",
    "nhìu": "nhiều",
    "nhiu": "nhiều",
    "thik": "thích",
    "iu": "yêu",
    "wen": "quen",
    "nc": "nước",
    "e": "em",
    "cty": "công ty",
    "tp": "thành phố",
    "tphcm": "thành phố hồ chí minh",
    "hcm": "hồ chí minh",
    "q": "quận",
    "p": "phường",
    "ubnd": "ủy ban nhân dân",
    "mik": "mình",
    "mk": "mình",
    "khum": "không",
    "kô": "không",
    "chx": "chưa",
    "ik": "đi",
    "hum": "hôm",
    "đk": "đăng ký",
    "dk": "đăng ký",
    "dvc": "dịch vụ công",
    "bv": "bệnh viện",
    "bhyt": "bảo hiểm y tế",
    "csgt": "cảnh sát giao thông",
    "gv": "giáo viên",
    "gvcn": "giáo viên chủ nhiệm",
}

# A whole \w+ token that is a key of TEEN_CODE: only those call back into Python.
_TEEN_TOKEN = re.compile(
    r"(?<!\w)(?:" + "|".join(map(re.escape, sorted(TEEN_CODE, key=len, reverse=True))) + r")(?!\w)"
)
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
    return _TEEN_TOKEN.sub(lambda m: TEEN_CODE[m.group(0)], text)


class _WithoutMarks(dict[int, int | None]):
    """str.translate's table: a combining mark (category Mn) is dropped, any other character kept;
    each character's category is looked up once."""

    def __missing__(self, code: int) -> int | None:
        kept = None if unicodedata.category(chr(code)) == "Mn" else code
        if len(self) < 20_000:  # the characters of real text are few; odd input cannot grow it without end
            self[code] = kept
        return kept


_WITHOUT_MARKS = _WithoutMarks()


def fold(text: str) -> str:
    """Strip Vietnamese diacritics: "đường ngập" -> "duong ngap"."""
    return unicodedata.normalize("NFD", text.replace("đ", "d").replace("Đ", "D")).translate(_WITHOUT_MARKS)


def canonical(text: str) -> str:
    """The folded view: lowercased, teen code expanded, English complaint words
    translated, then accents removed."""
    return fold(translate_english_terms(expand_teen_code(lower(text))))


# Expatriates report in English. The corpus has far fewer English reports than
# Vietnamese ones, so the folded view maps common English complaint words onto
# their Vietnamese equivalents and English reports borrow what the model learnt
# from Vietnamese ones. Keys must not be Vietnamese syllables written without
# accents ("can", "ban", "to" are), which test_classifier checks.
ENGLISH_TERMS = {
    # roads and traffic
    "pothole": "ổ gà",
    "road": "đường",
    "street": "đường",
    "asphalt": "nhựa đường",
    "traffic light": "đèn giao thông",
    "traffic signal": "đèn tín hiệu giao thông",
    "traffic jam": "kẹt xe",
    "traffic": "giao thông",
    "congestion": "ùn tắc",
    "accident": "tai nạn",
    "crash": "tai nạn",
    "lane": "làn đường",
    "sign": "biển báo",
    "signage": "biển báo",
    "bridge": "cầu",
    "truck": "xe tải",
    "speed bump": "gờ giảm tốc",
    "zebra crossing": "vạch qua đường",
    "crosswalk": "vạch qua đường",
    "intersection": "ngã tư",
    "junction": "ngã tư",
    "roundabout": "vòng xoay",
    "wrong way": "ngược chiều",
    "wrong side": "ngược chiều",
    "cracked": "nứt",
    "sinkhole": "sụt lún",
    "motorbike": "xe máy",
    "scooter": "xe máy",
    "bus stop": "trạm xe buýt",
    # street lighting
    "street light": "đèn đường",
    "streetlight": "đèn đường",
    "street lamp": "đèn đường",
    "streetlamp": "đèn đường",
    "lamp post": "cột đèn",
    "lamppost": "cột đèn",
    "light pole": "cột đèn",
    "lamp": "đèn",
    "light": "đèn",
    "lighting": "chiếu sáng",
    "dark": "tối",
    "pitch black": "tối om",
    "flickering": "chớp tắt",
    "flicker": "chớp tắt",
    "bulb": "bóng đèn",
    # drainage and flooding
    "flood": "ngập",
    "flooded": "ngập",
    "flooding": "ngập",
    "drain": "cống",
    "drainage": "thoát nước",
    "sewer": "cống",
    "sewage": "nước thải",
    "gutter": "cống",
    "manhole": "hố ga",
    "blocked": "nghẹt",
    "clogged": "nghẹt",
    "high tide": "triều cường",
    "tide": "triều cường",
    "canal": "kênh",
    "rain": "mưa",
    # water supply
    "tap water": "nước máy",
    "running water": "nước máy",
    "water": "nước",
    "no water": "mất nước",
    "water outage": "mất nước",
    "water pressure": "áp lực nước",
    "pipe": "ống nước",
    "leak": "rò rỉ",
    "leaking": "rò rỉ",
    "meter": "đồng hồ",
    "water bill": "hóa đơn tiền nước",
    "muddy": "đục",
    "brown": "đục",
    "chlorine": "clo",
    # waste and sanitation
    "garbage": "rác",
    "trash": "rác",
    "rubbish": "rác",
    "litter": "rác",
    "waste": "rác",
    "bin": "thùng rác",
    "dumped": "đổ trộm",
    "dumping": "đổ trộm",
    "collected": "thu gom",
    "collection": "thu gom",
    "toilet": "nhà vệ sinh",
    "dead rat": "xác chuột",
    "stink": "hôi thối",
    "stinks": "hôi thối",
    "smell": "mùi hôi",
    "smelly": "hôi",
    # pollution and noise
    "noise": "ồn",
    "noisy": "ồn ào",
    "loud": "ồn",
    "music": "nhạc",
    "smoke": "khói",
    "burning": "đốt",
    "dust": "bụi",
    "dusty": "bụi",
    "pollution": "ô nhiễm",
    "polluted": "ô nhiễm",
    "factory": "nhà máy",
    "chemical": "hóa chất",
    "air quality": "chất lượng không khí",
    # trees and parks
    "tree": "cây",
    "branch": "cành cây",
    "fallen": "đổ",
    "fell": "đổ",
    "leaning": "nghiêng",
    "park": "công viên",
    "playground": "sân chơi",
    "swing": "xích đu",
    "bench": "ghế đá",
    "roots": "rễ cây",
    "trim": "cắt tỉa",
    "prune": "cắt tỉa",
    # urban order
    "vendor": "bán hàng rong",
    "hawker": "bán hàng rong",
    "sidewalk": "vỉa hè",
    "pavement": "vỉa hè",
    "footpath": "vỉa hè",
    "parked": "đậu xe",
    "parking": "đậu xe",
    "encroach": "lấn chiếm",
    "encroaching": "lấn chiếm",
    "stall": "sạp",
    "tables and chairs": "bàn ghế",
    "advertising": "quảng cáo",
    "flyer": "quảng cáo",
    "sticker": "quảng cáo",
    "banner": "băng rôn",
    # construction
    "construction": "công trình xây dựng",
    "building site": "công trình",
    "permit": "giấy phép",
    "storey": "tầng",
    "floors": "tầng",
    "debris": "xà bần",
    "crane": "cần cẩu",
    "scaffolding": "giàn giáo",
    "demolition": "phá dỡ",
    # public security
    "theft": "trộm",
    "stolen": "trộm",
    "steal": "trộm",
    "thief": "trộm",
    "thieves": "trộm",
    "robbed": "cướp",
    "robbery": "cướp",
    "snatched": "giật",
    "snatching": "giật",
    "fight": "đánh nhau",
    "fighting": "đánh nhau",
    "gambling": "cờ bạc",
    "drugs": "ma túy",
    "scam": "lừa đảo",
    "scammer": "lừa đảo",
    "fraud": "lừa đảo",
    "police": "công an",
    "racing": "đua xe",
    # food safety and markets
    "food": "thực phẩm",
    "food poisoning": "ngộ độc thực phẩm",
    "spoiled": "ôi thiu",
    "rotten": "ôi thiu",
    "expired": "hết hạn",
    "fake": "hàng giả",
    "counterfeit": "hàng giả",
    "overcharged": "chặt chém",
    "overcharging": "chặt chém",
    "market": "chợ",
    "restaurant": "quán ăn",
    # health
    "hospital": "bệnh viện",
    "clinic": "phòng khám",
    "doctor": "bác sĩ",
    "dengue": "sốt xuất huyết",
    "mosquito": "muỗi",
    "mosquitoes": "muỗi",
    "pharmacy": "nhà thuốc",
    "medicine": "thuốc",
    "epidemic": "dịch bệnh",
    "outbreak": "dịch bệnh",
    "vaccine": "tiêm chủng",
    "vaccination": "tiêm chủng",
    "prescription": "toa thuốc",
    # education
    "school": "trường học",
    "teacher": "giáo viên",
    "student": "học sinh",
    "pupil": "học sinh",
    "tuition": "học phí",
    "fees": "tiền",
    "extra classes": "học thêm",
    "tutoring": "học thêm",
    "kindergarten": "mầm non",
    # administration
    "paperwork": "hồ sơ",
    "application": "hồ sơ",
    "certificate": "giấy chứng nhận",
    "ward office": "ủy ban phường",
    "official": "cán bộ",
    "officials": "cán bộ",
    "online public service": "dịch vụ công",
    "birth certificate": "giấy khai sinh",
    "id card": "căn cước",
    "residence": "cư trú",
    "delayed": "chậm trễ",
    "bribe": "hối lộ",
    # land and housing
    "land": "đất",
    "dispute": "tranh chấp",
    "land use": "quyền sử dụng đất",
    "pink book": "sổ hồng",
    "red book": "sổ đỏ",
    "apartment": "chung cư",
    "condo": "chung cư",
    "building management": "ban quản lý",
    "landlord": "chủ nhà",
    "compensation": "bồi thường",
    # electricity
    "electricity": "điện",
    "electric": "điện",
    "electrical": "điện",
    "power cut": "cúp điện",
    "power outage": "mất điện",
    "power went off": "mất điện",
    "power is off": "mất điện",
    "blackout": "mất điện",
    "outage": "mất",
    "power line": "dây điện",
    "power cable": "dây điện",
    "electric wire": "dây điện",
    "electrical wire": "dây điện",
    "live wire": "dây điện",
    "transformer": "trạm biến áp",
    "voltage": "điện áp",
    "sparks": "tóe lửa",
    "sparking": "tóe lửa",
    "short circuit": "chập điện",
    "electric meter": "công tơ điện",
    "electricity meter": "công tơ điện",
    "electricity bill": "hóa đơn tiền điện",
    "power bill": "hóa đơn tiền điện",
    "kwh": "số điện",
    # telecommunications
    "telecom": "viễn thông",
    "cable": "cáp",
    "fibre": "cáp quang",
    "fiber": "cáp quang",
    "internet": "mạng internet",
    "mobile signal": "sóng điện thoại",
    "phone signal": "sóng điện thoại",
    "signal": "sóng",
    "cell tower": "trạm phát sóng",
    "cellular tower": "trạm phát sóng",
    "phone tower": "trạm phát sóng",
    "operator": "nhà mạng",
    "carrier": "nhà mạng",
    "network": "nhà mạng",
    "spam": "tin nhắn rác",
    "text message": "tin nhắn",
    "sim card": "sim",
    "landline": "điện thoại bàn",
    "call": "cuộc gọi",
    # public transport
    "bus": "xe buýt",
    "bus station": "bến xe buýt",
    "bus driver": "tài xế xe buýt",
    "waterbus": "buýt đường sông",
    "water bus": "buýt đường sông",
    "ferry": "phà",
    "metro station": "ga metro",
    "train": "tàu",
    "fare": "giá vé",
    "ticket": "vé",
    "timetable": "lịch chạy",
    "route": "tuyến",
    "conductor": "phụ xe",
    "driver": "tài xế",
    # other
    "app": "ứng dụng",
    "thank": "cảm ơn",
    "thanks": "cảm ơn",
}


def _prefix_tree(terms: list[str]) -> str:
    """A regex matching any of these terms, longest first (so "traffic light" wins over "light"), written
    as a tree of shared prefixes: a plain alternation would try every term at every word boundary."""
    tree: dict = {}
    for term in terms:
        node = tree
        for char in term:
            node = node.setdefault(char, {})
        node[""] = {}  # a term ends here

    def pattern(node: dict) -> str:
        branches = [re.escape(char) + pattern(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return ""
        longer = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return f"(?:{longer})?" if "" in node else longer  # greedy: a longer term first

    return pattern(tree)


# A term, then an optional plural ending.
_ENGLISH = re.compile(r"\b(" + _prefix_tree(list(ENGLISH_TERMS)) + r")(?:es|s)?\b")


def translate_english_terms(text: str) -> str:
    """Replace common English complaint words with their Vietnamese equivalent."""
    return _ENGLISH.sub(lambda m: ENGLISH_TERMS[m.group(1)], text)
