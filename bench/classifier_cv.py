"""How well does the report classifier do? Cross-validation plus a sanity set.

    .venv/bin/python bench/classifier_cv.py [--threshold 0.5] [--folds 5]

Stratified k-fold over the whole corpus: every report is predicted by a model
that never saw it, nor any rewording of it. The corpus holds the same complaint
written several ways (with and without diacritics, shortened, in teen code);
those variants are grouped and kept in one fold, or the model would be scored
on sentences it had seen in another spelling. Prints overall accuracy, accuracy on the reports that would
be routed automatically (confidence >= threshold), the triage rate, a sweep of
thresholds to choose DEFAULT_TRIAGE_THRESHOLD from, and per-category figures.
Then a small hand-written set in styles the corpus does not use (emoji, Telex
typing slips, code-switching, long formal letters), scored by a model trained
on the whole corpus. Rewrites its own section of bench/RESULTS.md (`--no-write` to print only).
"""

import argparse
import os
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sklearn
from joblib import Parallel, delayed
from sklearn.model_selection import StratifiedGroupKFold

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from service.classify.model import (  # noqa: E402
    DEFAULT_TRIAGE_THRESHOLD,
    Classifier,
    build_pipeline,
    fit,
    load_corpus,
    rewording_groups,
)

RESULTS = ROOT / "bench" / "RESULTS.md"
BEGIN, END = "<!-- classifier_cv:begin -->", "<!-- classifier_cv:end -->"

# (text, expected service_code), written apart from the corpus and in other voices.
SANITY_SET = [
    ("😡😡 ổ gà to đùng trước cổng KCX Tân Thuận, sáng nay thêm 1 chị té 🤕", "road_traffic"),
    ("Dạ cho em hỏi cái đèn xanh đèn đỏ ở ngã tư Phú Nhuận bị sao mà cứ đỏ hoài vậy ạ 🙏", "road_traffic"),
    ("mặt đườngf Nguyễn Tri Phương lún sâu lắm, xe bus chạy qua nhún như võng", "road_traffic"),
    ("cái street light trước nhà em die rồi, tối thui à 🌚", "street_lighting"),
    ("Đèn cao áp đầu hẻm 7 chớp chớp cả đêm như sàn nhảy 🪩 ai thay giùm", "street_lighting"),
    ("V/v: Đề nghị sửa chữa hệ thống chiếu sáng công cộng. 1. Địa điểm: hẻm 42 Ông Ích Khiêm. 2. Hiện trạng: 4/5 bóng không sáng.", "street_lighting"),
    ("mưa có tí mà nước lên tới pô xe 🌊🌊 Nguyễn Gia Trí bơi luôn", "drainage_flooding"),
    ("Cái hố ga trước tiệm tạp hóa mất nắp, tui phải úp cái thau lên 😅", "drainage_flooding"),
    ("V/v: nạo vét cống. Hiện trạng: cống hẻm 9 Huỳnh Khương An nghẹt, nước mưa ứ đọng sau mỗi trận mưa.", "drainage_flooding"),
    ("nước máy nhà mình giờ như trà sữa 🧋 ai dám xài", "water_supply"),
    ("từ hôm qua tới giờ vòi nước khô khốc 🚱 phường 11 Bình Thạnh", "water_supply"),
    ("ống nước bể phun như đài phun nước ngay ngã ba Tô Hiến Thành luôn mn 😂", "water_supply"),
    ("rác chất cao như núi 🗑️🗑️ ở góc chợ Xóm Chiếu, mùi kinh dị", "waste_sanitation"),
    ("có ai đó quăng nguyên cái sofa cũ ra đầu hẻm 🛋️ 3 bữa rồi", "waste_sanitation"),
    ("Xin kiem tra viec thu gom rac tai khu pho 4, phuong 9, quan Phu Nhuan: 5 ngay chua thu.", "waste_sanitation"),
    ("🎤🎤 1h sáng rồi mà còn 'em ơi Hà Nội phố' inh ỏi, hẻm 88 Nguyễn Văn Nghi", "environment_pollution"),
    ("mùi khét nhựa cháy bay vô nhà từ tối tới giờ 🤢 chắc có ai đốt rác", "environment_pollution"),
    ("the bar below my flat plays EDM till 3am every weekend, walls shaking 🔊", "environment_pollution"),
    ("cây me trước nhà nghiêng 45 độ rồi 🌳😱 bão tới là xong", "trees_parks"),
    ("xích đu ở công viên phường mình gãy cả tuần rồi, bé nhà em khóc quá trời 😢", "trees_parks"),
    ("Một nhánh cây to gãy treo lơ lửng ngay trên trạm xe buýt Lê Lợi, rất nguy hiểm.", "trees_parks"),
    ("vỉa hè là của quán nhậu chứ hok phải của người đi bộ 🙄 đường Phan Văn Trị", "urban_order"),
    ("ô tô đỗ chễm chệ trên vỉa hè trước cửa nhà tôi 🚗 suốt từ sáng", "urban_order"),
    ("Xe đẩy bán trái cây chắn ngay lối lên xuống cầu bộ hành chợ Bến Thành", "urban_order"),
    ("bị giật điện thoại 📱 lúc đứng chờ grab ở Nguyễn Trãi Q1, 2 thằng đi xe Exciter", "public_security"),
    ("Tối nào cũng có nhóm thanh niên tụ tập chích hút ở gầm cầu Chánh Hưng", "public_security"),
    ("Có sới bạc trong nhà 15/2 hẻm 60, ồn ào cãi nhau tới sáng, nghi có cho vay nặng lãi", "public_security"),
    ("ăn bánh mì ở xe đầu hẻm xong cả nhà đau bụng tiêu chảy 🤮", "food_safety_market"),
    ("Chợ Tân Định bán 1 ký tôm tới 500k mà cân thiếu 2 lạng 😤", "food_safety_market"),
    ("mỹ phẩm xách tay fake bán tràn lan trên đường Hải Thượng Lãn Ông", "food_safety_market"),
    ("bệnh viện quận chờ khám từ 6h tới 12h chưa tới lượt 😩", "health"),
    ("hẻm mình có 4 ca sốt xuất huyết 🦟 mà chưa ai phun thuốc", "health"),
    ("Nhà thuốc ở đầu chợ bán thuốc kháng sinh không cần toa cho cả con nít", "health"),
    ("trường bắt đóng tiền máy lạnh, tiền quỹ lớp, tiền học thêm đủ thứ 💸", "education"),
    ("Cô chủ nhiệm lớp 3/2 trường tiểu học Nguyễn Bỉnh Khiêm ép học sinh học thêm ở nhà cô", "education"),
    ("Con tôi bị bạn cùng lớp bắt nạt, giáo viên biết mà không xử lý", "education"),
    ("nộp hồ sơ cấp lại giấy khai sinh 2 tháng rồi vẫn 'đang xử lý' 🐢", "administration"),
    ("cán bộ một cửa phường 12 nói chuyện cộc cằn, hỏi thì hất hàm", "administration"),
    ("dịch vụ công online cứ báo lỗi khi tải file CCCD lên", "administration"),
    ("nhà hàng xóm xây tường lấn qua đất nhà mình 30cm, hòa giải ko được", "land_housing"),
    ("Ban quản trị chung cư tự ý tăng phí quản lý, không họp cư dân", "land_housing"),
    ("đất nhà tôi nằm trong quy hoạch treo 15 năm, không được cấp sổ", "land_housing"),
    ("nhà bên cạnh đang lên tầng 5 mà bảng giấy phép chỉ có 3 tầng 🏗️", "construction"),
    ("công trình ko che lưới, gạch đá rơi xuống đường Lý Tự Trọng", "construction"),
    ("Xây nhà trái phép trên đất nông nghiệp ở xã Bình Mỹ, Củ Chi", "construction"),
    ("cảm ơn các anh chị đã hỗ trợ 🙏", "other"),
    ("app không cho đăng nhập bằng số điện thoại mới", "other"),
    ("Cho hỏi tổng đài 1022 làm việc tới mấy giờ?", "other"),
    # Dictated to a phone: no punctuation, fillers, run-on.
    ("ờ thì là cái đường trước nhà tui á nó bị lủng một lỗ bự lắm xe chạy qua là xóc muốn văng luôn", "road_traffic"),
    ("alo cho tui báo là cái đèn ở đầu hẻm nó tắt cả tuần nay rồi tối đi về sợ lắm", "street_lighting"),
    ("mưa xuống một cái là nước nó dâng lên tới bắp chuối luôn cống thì không thấy thoát gì hết trơn", "drainage_flooding"),
    ("nhà tui mở vòi ra là không có giọt nào hết từ hôm kia tới giờ đó", "water_supply"),
    ("bãi rác ở đầu đường nó thúi lắm rồi mà chưa thấy ai tới hốt hết", "waste_sanitation"),
    ("cái nhà kế bên đó đêm nào cũng hát hò tới một hai giờ sáng ồn không chịu nổi", "environment_pollution"),
    ("cái cây dầu trước cửa nó nghiêng qua nhà tui rồi gió mạnh là sợ nó đổ lắm", "trees_parks"),
    ("mấy cái quán ăn nó bày bàn ghế ra hết cái lề đường rồi người ta đi bộ không có chỗ đi", "urban_order"),
    # Code-switching, the way office workers type.
    ("road này bị sụt lún nặng lắm, pls check gấp, Nguyễn Văn Linh gần Lotte", "road_traffic"),
    ("Drain bị clogged, nước không rút, hẻm ngập hoài luôn á", "drainage_flooding"),
    ("water pressure yếu xìu, cả building không có nước tắm", "water_supply"),
    ("sidewalk bị chiếm hết làm parking, đi bộ phải xuống đường", "urban_order"),
    ("có đứa snatch điện thoại của em ở Bùi Viện, police phường nào xử lý ạ", "public_security"),
    ("con em bị food poisoning sau khi ăn ở canteen trường", "food_safety_market"),
    ("clinic tư nhân ở Q3 charge quá mắc, không có giấy phép hành nghề", "health"),
    ("school bắt phụ huynh đóng thêm fees không rõ ràng", "education"),
    # Itemised, the way a residents' group writes.
    ("Tổ dân phố 5 kiến nghị: (1) cống hẻm nghẹt; (2) mưa là ngập 30cm; (3) đã báo 2 lần chưa xử lý.", "drainage_flooding"),
    ("Nội dung: cây xanh gãy cành. Địa điểm: trước số 12 Pasteur. Mức độ: nguy hiểm.", "trees_parks"),
    ("Nội dung: đèn chiếu sáng không hoạt động. Địa điểm: hẻm 25 Trần Đình Xu. Thời gian: 2 tuần.", "street_lighting"),
    ("Nội dung: lấn chiếm vỉa hè kinh doanh. Địa điểm: 100-120 Nguyễn Thái Học.", "urban_order"),
    ("Nội dung: xây dựng không phép. Địa điểm: 45/7 Bùi Đình Túy. Hiện trạng: đang đổ sàn tầng 4.", "construction"),
    ("Nội dung: tranh chấp ranh đất với hộ liền kề. Địa điểm: ấp 2 xã Bình Lợi.", "land_housing"),
    ("Nội dung: hồ sơ đăng ký thường trú trễ hẹn 20 ngày. Nơi nộp: UBND phường 4.", "administration"),
    ("Nội dung: nghi ngộ độc sau khi ăn cơm gà. Số người: 6. Địa điểm: quán cơm đường Tô Hiến Thành.", "food_safety_market"),
    ("Nội dung: ổ dịch sốt xuất huyết. Số ca: 3. Địa điểm: hẻm 91 Nguyễn Tiểu La.", "health"),
    ("Nội dung: thu tiền ngoài quy định. Đơn vị: trường THCS Lê Lợi.", "education"),
    ("Nội dung: nhóm thanh niên đánh nhau. Địa điểm: công viên Lê Văn Tám. Thời gian: 23h.", "public_security"),
    ("Nội dung: đốt rác gây khói. Địa điểm: bãi đất trống sau chợ Phú Lâm.", "environment_pollution"),
    ("Nội dung: rác tồn đọng 4 ngày. Địa điểm: đầu hẻm 30 Lê Văn Sỹ.", "waste_sanitation"),
    ("Nội dung: ống nước vỡ. Địa điểm: trước số 8 Lý Chính Thắng.", "water_supply"),
    ("Nội dung: ổ gà lớn giữa đường. Địa điểm: Cộng Hòa gần Etown.", "road_traffic"),
    ("Nội dung: góp ý giao diện ứng dụng khó dùng cho người lớn tuổi.", "other"),
]


def predict(pipeline, texts):
    """Codes and confidences through the same path the service uses."""
    predictions = Classifier(pipeline, version="bench").predict_many(texts)
    return (np.array([p.service_code for p in predictions]),
            np.array([p.confidence for p in predictions]))


# Shuffles of the folds pooled in the figures: one shuffle alone moves them by a few tenths of a point.
REPEATS = 3


def same_sentence_groups(texts) -> np.ndarray:
    """A group number per text; rewordings of one sentence share it (transitively)."""
    return rewording_groups(texts)


def cross_validated_predictions(texts, labels, folds: int, repeats: int = 1, n_jobs: int | None = None):
    """Every report scored `repeats` times, each time by a model that saw neither it nor its rewordings,
    the folds shuffled anew for each repeat (one shuffle moves the figures by a few tenths of a point).
    Returns the labels, predictions and confidences of all the scorings, repeat after repeat. Each fold
    is trained and scored in its own process (one per core by default): the folds share nothing."""
    groups = same_sentence_groups(texts)
    splits = [
        split
        for repeat in range(repeats)
        for split in StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=repeat).split(texts, labels, groups)
    ]
    n_jobs = n_jobs or min(len(splits), os.cpu_count() or 1)
    scored = Parallel(n_jobs=n_jobs)(
        delayed(_train_and_score)(texts[train_index], labels[train_index], texts[test_index])
        for train_index, test_index in splits
    )
    predicted = np.empty(len(texts) * repeats, dtype=object)
    confidence = np.zeros(len(texts) * repeats)
    for number, ((_, test_index), (fold_predicted, fold_confidence)) in enumerate(zip(splits, scored, strict=True)):
        at = test_index + len(texts) * (number // folds)
        predicted[at], confidence[at] = fold_predicted, fold_confidence
    return np.tile(labels, repeats), predicted, confidence


def _train_and_score(train_texts, train_labels, test_texts):
    return predict(fit(build_pipeline(), train_texts, train_labels), list(test_texts))


def summary(correct, confidence, threshold):
    routed = confidence >= threshold
    routed_accuracy = correct[routed].mean() if routed.any() else float("nan")
    return correct.mean(), routed_accuracy, 1 - routed.mean()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threshold", type=float, default=DEFAULT_TRIAGE_THRESHOLD)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=REPEATS, help="fold shuffles, pooled")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    args = parser.parse_args()

    examples = load_corpus()
    texts = np.array([text for text, _ in examples], dtype=object)
    labels = np.array([label for _, label in examples])
    counts = Counter(labels)
    distinct = len(set(same_sentence_groups(texts)))
    print(f"corpus: {len(examples)} reports, {len(counts)} categories "
          f"({min(counts.values())}-{max(counts.values())} each), {distinct} distinct sentences")

    scored_labels, predicted, confidence = cross_validated_predictions(texts, labels, args.folds, args.repeats)
    correct = predicted == scored_labels
    shuffles = [
        summary(correct[repeat * len(texts) : (repeat + 1) * len(texts)],
                confidence[repeat * len(texts) : (repeat + 1) * len(texts)], args.threshold)
        for repeat in range(args.repeats)
    ]
    for repeat, figures in enumerate(shuffles):
        print("shuffle {}: accuracy {:.3f}, routed accuracy {:.3f}, triage rate {:.3f}".format(repeat, *figures))

    accuracy, routed_accuracy, triage_rate = summary(correct, confidence, args.threshold)
    print(f"\n{args.folds}-fold CV, {args.repeats} shuffles pooled, at threshold {args.threshold:.2f}: accuracy {accuracy:.3f}, "
          f"accuracy on non-triaged {routed_accuracy:.3f}, triage rate {triage_rate:.3f}")

    print("\nthreshold  non-triaged-accuracy  triage-rate")
    sweep = []
    for threshold in np.arange(0.50, 0.96, 0.05):
        _, sweep_accuracy, sweep_triage = summary(correct, confidence, threshold)
        sweep.append((threshold, sweep_accuracy, sweep_triage))
        print(f"   {threshold:.2f}        {sweep_accuracy:.3f}            {sweep_triage:.3f}")

    print(f"\n{'category':24} {'n':>4} {'recall':>7} {'precision':>9} {'routed-acc':>10} {'triage':>7}")
    per_category = []
    for code in sorted(counts):
        actual = scored_labels == code
        claimed = predicted == code
        routed = actual & (confidence >= args.threshold)
        row = (code, int(actual.sum()) // args.repeats, correct[actual].mean(), (correct & claimed).sum() / max(claimed.sum(), 1),
               correct[routed].mean() if routed.any() else float("nan"), 1 - routed.sum() / actual.sum())
        per_category.append(row)
        print(f"{row[0]:24} {row[1]:4d} {row[2]:7.3f} {row[3]:9.3f} {row[4]:10.3f} {row[5]:7.3f}")

    confusions = Counter(zip(scored_labels[~correct], predicted[~correct], strict=True)).most_common(12)
    print("\nmost frequent confusions (actual -> predicted):")
    for (actual, guess), count in confusions:
        print(f"  {count:3d}  {actual} -> {guess}")

    pipeline = fit(build_pipeline(), texts, labels)
    sanity_texts = [text for text, _ in SANITY_SET]
    sanity_labels = np.array([label for _, label in SANITY_SET])
    sanity_predicted, sanity_confidence = predict(pipeline, sanity_texts)
    sanity_correct = sanity_predicted == sanity_labels
    sanity = summary(sanity_correct, sanity_confidence, args.threshold)
    print(f"\nsanity set ({len(SANITY_SET)} reports, other styles): accuracy {sanity[0]:.3f}, "
          f"accuracy on non-triaged {sanity[1]:.3f}, triage rate {sanity[2]:.3f}")
    for text, expected, guess, score in zip(sanity_texts, sanity_labels, sanity_predicted, sanity_confidence, strict=True):
        if guess != expected or score < args.threshold:
            mark = "wrong " if guess != expected else "triage"
            print(f"  {mark} {score:.2f} {guess:22} (expected {expected}) {text[:70]}")

    if not args.no_write:
        write_results(section(
            args, corpus=(len(examples), len(counts), distinct), figures=(accuracy, routed_accuracy, triage_rate),
            sweep=sweep, per_category=per_category, confusions=confusions, sanity=sanity, shuffles=shuffles,
        ))
        print(f"\nupdated {RESULTS.relative_to(ROOT)}")


def section(args, *, corpus, figures, sweep, per_category, confusions, sanity, shuffles) -> str:
    """The classifier's part of bench/RESULTS.md, between its own markers."""
    reports, categories, distinct = corpus
    accuracy, routed_accuracy, triage_rate = figures
    lines = [
        BEGIN,
        "## Report classifier (`bench/classifier_cv.py`)",
        "",
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; scikit-learn {sklearn.__version__}",
        f"- corpus: {reports:,} reports in {categories} fields, {distinct:,} distinct sentences (rewordings of one "
        "sentence grouped and kept in one fold)",
        f"- {args.folds}-fold grouped cross-validation repeated over {args.repeats} shuffles of the folds (every "
        f"report scored {args.repeats} times, pooled; confusions below count each scoring) at the triage threshold "
        f"{args.threshold:.2f}: "
        f"**accuracy {accuracy:.3f}, routed accuracy {routed_accuracy:.3f}, {triage_rate:.1%} sent to triage** "
        "(targets: ≥ 0.92, ≥ 0.97, ≤ 15 %)",
        "- each shuffle alone: " + "; ".join(
            f"{number}: {accuracy:.3f} / {routed:.3f} / {triaged:.1%}"
            for number, (accuracy, routed, triaged) in enumerate(shuffles)
        ),
        f"- sanity set ({len(SANITY_SET)} reports in styles the corpus does not use, model trained on the whole "
        f"corpus): accuracy {sanity[0]:.3f}, routed accuracy {sanity[1]:.3f}, {sanity[2]:.1%} triaged",
        "",
        "| threshold | routed accuracy | triaged |",
        "|---|---|---|",
        *(f"| {threshold:.2f} | {routed:.3f} | {triaged:.1%} |" for threshold, routed, triaged in sweep
          if 0.64 < threshold < 0.91),
        "",
        "| field | reports | recall | precision | routed accuracy | triaged |",
        "|---|---|---|---|---|---|",
        *(f"| {code} | {n} | {recall:.3f} | {precision:.3f} | {routed:.3f} | {triaged:.1%} |"
          for code, n, recall, precision, routed, triaged in per_category),
        "",
        "Most frequent confusions (actual → predicted): "
        + ", ".join(f"{actual} → {guess} {count}" for (actual, guess), count in confusions) + ".",
        "",
        "Re-run: `.venv/bin/python bench/classifier_cv.py` (about two minutes on 2 cores).",
        END,
    ]
    return "\n".join(lines)


def write_results(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmarks\n"
    if BEGIN in current and END in current:
        before, rest = current.split(BEGIN, 1)
        updated = before + text + rest.split(END, 1)[1]
    else:
        updated = current.rstrip() + "\n\n" + text + "\n"
    RESULTS.write_text(updated)


if __name__ == "__main__":
    main()
