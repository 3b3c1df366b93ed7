"""The report classifier: what residents type reaches the right category, junk
reaches a human, and the trained model is cached until the corpus changes."""

import json

import pytest

from service.classify import model
from service.classify.model import Classifier, Prediction, corpus_dir, load_corpus
from service.classify.text import canonical, expand_teen_code, fold, translate_english_terms
from tests.conftest import trained_model_cache

SERVICE_CODES = {
    "road_traffic",
    "street_lighting",
    "drainage_flooding",
    "water_supply",
    "waste_sanitation",
    "environment_pollution",
    "trees_parks",
    "urban_order",
    "construction",
    "public_security",
    "food_safety_market",
    "health",
    "education",
    "administration",
    "land_housing",
    "electricity",
    "telecommunications",
    "public_transport",
    "other",
}


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    # The cache every test shares (tests/conftest.py): the model is trained once per corpus in a run.
    return Classifier.load_or_train(trained_model_cache())


def test_corpus_covers_every_service_code():
    assert {code for _, code in load_corpus()} == SERVICE_CODES


def test_folding_removes_vietnamese_diacritics():
    assert fold("Đường Lê Văn Sỹ ngập nước") == "Duong Le Van Sy ngap nuoc"


def test_teen_code_expands_but_alley_and_broken_survive():
    assert expand_teen_code("ko dc j r") == "không được gì rồi"
    # Unaccented "hem" is "hẻm" (alley) and "hong" is "hỏng" (broken), not "không".
    assert expand_teen_code("hem 45 den hong") == "hem 45 den hong"


def test_english_terms_leave_unaccented_vietnamese_alone():
    text = "can bo phuong ban qua, to roi dan tum lum, nap ga bang gang"
    assert translate_english_terms(text) == text


def test_teen_code_expands_whole_words_only():
    assert expand_teen_code("k có nc, 50k, q1 p.12, ngập quáaaa, ng ta") == (
        "không có nước, 50k, quận 1 phường 12, ngập quáaa, người ta"
    )


def test_the_longest_english_term_wins_with_its_plural():
    assert translate_english_terms("bus stations, buses and the bus driver") == (
        "bến xe buýt, xe buýt and the tài xế xe buýt"
    )
    assert translate_english_terms("a busker on the waterbus") == "a busker on the buýt đường sông"


def test_english_street_light_meets_vietnamese_den_duong():
    assert canonical("Street lights broken") == canonical("đèn đường broken")


@pytest.mark.parametrize(
    ("with_diacritics", "without_diacritics", "service_code"),
    [
        ("Đèn đường trước nhà tôi bị hư cả tuần nay", "den duong truoc nha toi bi hu ca tuan nay", "street_lighting"),
        ("Đường bị ngập nước quá trời sau cơn mưa", "duong bi ngap nuoc qua troi sau con mua", "drainage_flooding"),
        (
            "Rác tồn đọng đầu hẻm ba ngày không ai thu gom",
            "rac ton dong dau hem ba ngay khong ai thu gom",
            "waste_sanitation",
        ),
        ("Hàng xóm hát karaoke tới hai giờ sáng", "hang xom hat karaoke toi hai gio sang", "environment_pollution"),
    ],
)
def test_report_gets_same_category_with_or_without_diacritics(
    classifier, with_diacritics, without_diacritics, service_code
):
    assert classifier.predict(with_diacritics).service_code == service_code
    assert classifier.predict(without_diacritics).service_code == service_code


@pytest.mark.parametrize(
    ("text", "service_code"),
    [
        ("đèn đg hư r mn ơi, tối thui lun", "street_lighting"),
        ("nc máy đục wá, ko dám nấu ăn", "water_supply"),
        ("ổ gà to đùng giữa đg, té hoài ko ai sửa", "road_traffic"),
        ("quán nhậu chiếm hết vỉa hè, ko có chỗ đi bộ", "urban_order"),
    ],
)
def test_teen_code_report_is_classified(classifier, text, service_code):
    assert classifier.predict(text).service_code == service_code


def test_english_report_is_classified(classifier):
    prediction = classifier.predict("Street light broken on Nguyen Hue, the whole block is dark")
    assert prediction.service_code == "street_lighting"
    assert not prediction.triage


@pytest.mark.parametrize("text", ["", "   ", "asdf qwerty zxcv", "lkjh poiu", "???", "😀😀😀", "12345"])
def test_gibberish_goes_to_triage(classifier, text):
    prediction = classifier.predict(text)
    assert prediction.triage
    assert prediction.confidence < 0.1


@pytest.mark.parametrize("text", ["xin chào", "hello", "ok", "test"])
def test_short_off_topic_text_is_never_routed_to_a_department(classifier, text):
    prediction = classifier.predict(text)
    assert prediction.triage or prediction.service_code == "other"


def test_triage_is_confidence_below_threshold(classifier):
    text = "cây xanh trước nhà nghiêng sắp đổ"
    confidence = classifier.predict(text).confidence
    assert classifier.predict(text, threshold=confidence).triage is False
    assert classifier.predict(text, threshold=confidence + 1e-6).triage is True


def test_predict_many_matches_predict(classifier):
    texts = ["đèn đường hư", "mất nước từ sáng", "asdf"]
    assert classifier.predict_many(texts, 0.5) == [classifier.predict(text, 0.5) for text in texts]
    assert classifier.predict_many([], 0.5) == []
    assert isinstance(classifier.predict("đèn đường hư"), Prediction)


def test_second_load_reuses_the_cache(classifier, monkeypatch):
    def no_training(examples):
        raise AssertionError("trained again although the cache was valid")

    monkeypatch.setattr(model, "train", no_training)
    again = Classifier.load_or_train(trained_model_cache())
    assert again.version == classifier.version
    assert again.predict("đèn đường hư") == classifier.predict("đèn đường hư")


def _write_corpus(directory, reports_by_code):
    directory.mkdir(parents=True, exist_ok=True)
    for code, reports in reports_by_code.items():
        lines = "".join(json.dumps({"text": text}, ensure_ascii=False) + "\n" for text in reports)
        (directory / f"{code}.jsonl").write_text(lines, encoding="utf-8")


@pytest.fixture
def small_corpus(tmp_path):
    # A small corpus keeps training fast; six reports each feed the 5-fold calibration.
    corpus = tmp_path / "corpus"
    _write_corpus(
        corpus,
        {
            "street_lighting": [f"đèn đường hư số {n}" for n in range(6)],
            "water_supply": [f"mất nước máy hẻm {n}" for n in range(6)],
            "drainage_flooding": [f"đường ngập nước cống nghẹt {n}" for n in range(6)],
        },
    )
    return corpus


@pytest.fixture
def trainings(monkeypatch):
    calls = []
    real_train = model.train
    monkeypatch.setattr(model, "train", lambda examples: calls.append(1) or real_train(examples))
    return calls


def test_changed_corpus_retrains(small_corpus, trainings, tmp_path):
    cache = tmp_path / "cache"
    first = Classifier.load_or_train(cache, corpus_path=small_corpus)
    assert Classifier.load_or_train(cache, corpus_path=small_corpus).version == first.version
    assert len(trainings) == 1

    with (small_corpus / "water_supply.jsonl").open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "nước máy đục có cặn"}, ensure_ascii=False) + "\n")
    second = Classifier.load_or_train(cache, corpus_path=small_corpus)
    assert second.version != first.version
    assert len(trainings) == 2
    assert len(list(cache.glob("classifier-*.joblib"))) == 2


def test_damaged_cache_is_retrained(small_corpus, trainings, tmp_path):
    cache = tmp_path / "cache"
    first = Classifier.load_or_train(cache, corpus_path=small_corpus)
    (cache / f"classifier-{first.version}.joblib").write_bytes(b"half a pickle")
    again = Classifier.load_or_train(cache, corpus_path=small_corpus)
    assert len(trainings) == 2
    assert again.predict("mất nước máy").service_code == "water_supply"


def test_corpus_files_are_valid_json_lines():
    for path in corpus_dir().glob("*.jsonl"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if line.strip():
                assert json.loads(line)["text"].strip(), f"{path.name}:{number} is empty"


def test_unwritable_cache_keeps_the_model_in_memory_with_one_warning(small_corpus, trainings, tmp_path, caplog):
    # A cache folder that cannot be made (a file stands where its parent should be): as in an image whose
    # working directory belongs to root while the process runs as another user.
    (tmp_path / "var").write_text("not a folder")
    classifier = Classifier.load_or_train(tmp_path / "var" / "models", corpus_path=small_corpus)
    assert classifier.predict("mất nước máy").service_code == "water_supply"
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert len(warnings) == 1 and "stays in memory" in warnings[0].getMessage()
    assert len(trainings) == 1


def test_cache_written_by_one_user_is_readable_by_others(small_corpus, tmp_path):
    # The image trains at build time as root; the service runs as its own user and must load that file.
    Classifier.load_or_train(tmp_path, corpus_path=small_corpus)
    (cache_file,) = tmp_path.glob("classifier-*.joblib")
    assert cache_file.stat().st_mode & 0o044 == 0o044
