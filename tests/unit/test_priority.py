"""Danger signals raise a report to urgent; everyday complaints keep their category's priority."""

import pytest

from service.classify.priority import assess_priority, fold_accents

URGENT_REPORTS = [
    # fallen tree on people or vehicles
    ("Cây xanh bật gốc đổ đè 2 xe máy trên đường Nguyễn Thị Minh Khai", "fallen tree"),
    ("cay do de nguoi di duong o Le Duan", "fallen tree"),
    ("Cây đè xe ô tô, tài xế kẹt bên trong", "fallen tree"),
    ("Cây đổ đè chết người trên đường Tôn Đức Thắng", "fallen tree"),
    ("Không hiểu sao cây đổ đè xe máy của tôi", "fallen tree"),  # "không" negates nothing here
    ("A tree branch hit a pedestrian", "fallen tree"),
    ("Nhánh cây gãy rơi trúng người đi xe máy", "fallen tree"),
    ("A big tree fell on a car on Hai Ba Trung street", "fallen tree"),
    ("Fallen tree crushing two motorbikes near the market", "fallen tree"),
    # live wires and sparks
    ("Dây điện bị đứt rớt xuống đường, rất nguy hiểm", "live wire"),
    ("day dien dut rot xuong duong truoc hem 12", "live wire"),
    ("Trụ điện chập điện tóe lửa liên tục", "live wire"),
    ("Em bé bị điện giật ở cột đèn công viên", "live wire"),
    ("Nổ trụ điện ở ngã tư", "live wire"),
    ("Downed power line lying across the alley", "live wire"),
    ("Electrical box sparking on the sidewalk", "live wire"),
    # gas
    ("Nghe mùi gas nồng nặc trong hẻm", "gas leak"),
    ("ro ri gas o chung cu lo B", "gas leak"),
    ("Bình gas nhà bên bị xì, cả hẻm ngửi thấy", "gas leak"),
    ("Strong smell of gas near the school gate", "gas leak"),
    # fire
    ("Nhà dân bốc cháy dữ dội ở quận 8", "fire"),
    ("Hỏa hoạn tại chợ, khói đen bốc cao", "fire"),
    ("hoa hoan o xuong go, can xe chua chay", "fire"),
    ("Căn nhà bên cạnh đang cháy, lửa lan sang", "fire"),
    ("nha dang chay o hem 45", "fire"),
    ("Xe máy đang chạy thì bốc cháy giữa đường", "fire"),
    ("House on fire at the end of the alley", "fire"),
    # deep flood with people trapped
    ("Ngập sâu, nhiều người mắc kẹt trong nhà không ra được", "deep flood"),
    ("ngap sau, nguoi mac ket tren mai nha", "deep flood"),
    ("Nước ngập tới ngực ở đường Nguyễn Hữu Cảnh", "deep flood"),
    ("Family trapped by flood water in their house", "deep flood"),
    # collapsed structures
    ("Sập nhà ở phường 5, có người bên trong", "collapsed structure"),
    ("Bức tường công trình bị sập xuống vỉa hè", "collapsed structure"),
    ("sap cau go bac qua rach", "collapsed structure"),
    ("Tường nhà bên cạnh đổ sập", "collapsed structure"),
    ("Sạt lở bờ kè, nhà dân bị sập xuống sông", "collapsed structure"),
    ("Sụp lún nuốt xe máy trên đường Võ Văn Kiệt", "collapsed structure"),
    ("Xuất hiện hố tử thần giữa đường", "collapsed structure"),
    ("The wall of the school has collapsed", "collapsed structure"),
    # traffic accidents with injuries
    ("Tai nạn giao thông, một người bị thương nặng", "traffic accident"),
    ("tai nan xe may, nguoi nam bat tinh giua duong", "traffic accident"),
    ("Va chạm giữa xe tải và xe máy, nạn nhân chảy máu nhiều, cần cấp cứu", "traffic accident"),
    ("Motorbike crash, the rider is injured and bleeding", "traffic accident"),
]


@pytest.mark.parametrize(("text", "signal"), URGENT_REPORTS)
def test_danger_signal_makes_report_urgent(text, signal):
    priority, matched = assess_priority(text, "normal")
    assert priority == "urgent"
    assert matched is not None and matched.startswith(signal)


EVERYDAY_REPORTS = [
    # burnt-out bulbs and fire-safety wording are not fires
    "Đèn đường bị cháy bóng mấy hôm nay, hẻm tối om",
    "Cháy bóng đèn chiếu sáng trên cầu Kênh Tẻ",
    "Bóng đèn cầu thang chung cư bị cháy",
    "den duong bi chay bong o hem 30",
    "Kho chứa hàng không đảm bảo phòng cháy chữa cháy, nguy cơ cháy nổ",
    "Street light burnt out, fire hazard from the old wiring box",
    # words that fold to the same letters
    "Xe chạy quá tốc độ trong hẻm",
    "Nước chảy tràn ra đường từ ống vỡ",
    "Quán chay lấn chiếm vỉa hè",
    "Cầu sắp hoàn thành nhưng chưa thông xe",
    "Dây điện rối như mạng nhện, võng thấp",
    "Người bán xì gà lấn chiếm lòng đường",
    "Cây đổ chắn ngang đường, để xe không qua được",
    "Cây đổ xuống đường xe không qua được",
    "Chó đang chạy rông ngoài đường",
    "Cơm cháy bán trên vỉa hè",
    "Người đi đường bị điện giật mình vì tiếng còi",
    "Lũ trẻ bị mắc kẹt trong thang máy",
    "Đường ngập tới đầu gối",
    # negated or mild
    "Tai nạn nhẹ giữa hai xe máy, không có ai bị thương",
    "tai nan nhe, khong ai bi thuong",
    "Minor accident, no one was injured",
    "Không phải cháy, chỉ là khói đốt rác",
    "Đường ngập sâu 30cm sau mưa, xe chết máy",
    "Kẹt xe do ngập nước ở Thảo Điền",
    "Sụt lún mặt đường nhẹ trước nhà số 10",
    "Cây xanh nghiêng, có nguy cơ đổ",
    "Mất điện từ sáng đến giờ",
    "Đèn tín hiệu giao thông chập chờn",
    "Rác thải ùn ứ, bốc mùi hôi thối",
]


@pytest.mark.parametrize("text", EVERYDAY_REPORTS)
def test_everyday_report_keeps_category_priority(text):
    assert assess_priority(text, "low") == ("low", None)


def test_matched_description_quotes_the_words_as_written():
    _, matched = assess_priority("Khẩn cấp: nhà dân BỐC CHÁY ở hẻm 7", "normal")
    assert matched == 'fire: "BỐC CHÁY"'


def test_negation_does_not_hide_a_later_real_injury():
    text = "Tai nạn liên hoàn: xe đầu không sao nhưng người đi xe máy bị thương"
    assert assess_priority(text, "normal")[0] == "urgent"


def test_explosion_is_not_read_as_english_no():
    assert assess_priority("Bình gas nổ, cháy lan sang nhà bên", "normal")[0] == "urgent"


def test_fold_accents_keeps_positions():
    text = "Đường Hùng Vương ngập"
    assert fold_accents(text) == "duong hung vuong ngap"
    assert len(fold_accents(text)) == len(text)
    # Decomposed input (some keyboards) folds the same as composed input.
    assert fold_accents("Cha\u0301y") == "chay"


def test_each_signals_quick_check_finds_exactly_what_its_cues_find():
    """The one search that lets a text skip a signal matches exactly when one of the signal's cues does."""
    from service.classify.model import load_corpus
    from service.classify.priority import _SIGNALS
    from tests.unit.test_danger_sentences import SENTENCES, labelled

    texts = [text for text, _ in load_corpus()] + [text for _, text in labelled(SENTENCES.read_text())]
    texts += [text for text, _ in URGENT_REPORTS]
    for folded in map(fold_accents, texts):
        for signal in _SIGNALS:
            for quick, cues in ((signal.may_hit, signal.cues), (signal.may_hit_with, signal.with_any)):
                if not cues:
                    continue
                assert (quick.search(folded) is not None) == any(cue.pattern.search(folded) for cue in cues), folded
