"""Tests for cpak_cli.core.metrics with hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cpak_cli.core.metrics import NOT_MEASURED, classification_report, median_abs_error, point_errors_mm, summarize_errors

# ---------------------------------------------------------------- point errors


def test_point_errors_anisotropic_spacing() -> None:
    spacing = (0.5, 0.2)  # (row_mm, col_mm)
    true = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0], [5.0, 5.0]])
    pred = np.array(
        [
            [10.0, 0.0],  # 10 px in x (columns) * 0.2 mm = 2 mm
            [0.0, 10.0],  # 10 px in y (rows)    * 0.5 mm = 5 mm
            [16.0, 9.0],  # dx 15 px -> 3 mm, dy 8 px -> 4 mm => 5 mm
            [np.nan, np.nan],  # missed
        ]
    )
    e = point_errors_mm(pred, true, spacing)
    assert e.shape == (4,)
    np.testing.assert_allclose(e[:3], [2.0, 5.0, 5.0])
    assert math.isnan(e[3])
    # Swapping the spacing order must change the answer (catches a row/col mix-up).
    np.testing.assert_allclose(point_errors_mm(pred[:2], true[:2], (0.2, 0.5)), [5.0, 2.0])


def test_point_errors_single_point_and_bad_shapes() -> None:
    assert point_errors_mm(np.array([3.0, 4.0]), np.array([0.0, 0.0]), (1.0, 1.0)) == 5.0
    with pytest.raises(ValueError):
        point_errors_mm(np.zeros((3, 2)), np.zeros((2, 2)), (1.0, 1.0))
    with pytest.raises(ValueError):
        point_errors_mm(np.zeros((3, 3)), np.zeros((3, 3)), (1.0, 1.0))
    with pytest.raises(ValueError):
        point_errors_mm(np.zeros((3, 2)), np.zeros((3, 2)), (0.0, 1.0))


# ---------------------------------------------------------------- summaries


def test_summarize_errors_hand_example() -> None:
    # errors [1, 2, 3, 4, NaN]: n = 5, missed = 1; over [1, 2, 3, 4] (linear interpolation):
    # median 2.5, q1 = 1 + 0.75 * 1 = 1.75, q3 = 3 + 0.25 * 1 = 3.25, iqr 1.5,
    # p95: position 0.95 * 3 = 2.85 -> 3 + 0.85 * 1 = 3.85, mean 2.5.
    # SDR (<= z, over all 5 incl. the miss): 1mm 1/5, 2mm 2/5, 3mm 3/5, 5mm 4/5.
    s = summarize_errors(np.array([1.0, 2.0, 3.0, 4.0, np.nan]))
    assert s["n"] == 5 and s["missed"] == 1
    assert s["median"] == pytest.approx(2.5)
    assert s["q1"] == pytest.approx(1.75)
    assert s["q3"] == pytest.approx(3.25)
    assert s["iqr"] == pytest.approx(1.5)
    assert s["p95"] == pytest.approx(3.85)
    assert s["mean"] == pytest.approx(2.5)
    assert s["sdr_1mm"] == pytest.approx(0.2)
    assert s["sdr_2mm"] == pytest.approx(0.4)
    assert s["sdr_3mm"] == pytest.approx(0.6)
    assert s["sdr_5mm"] == pytest.approx(0.8)
    assert set(s) == {
        "n", "missed", "median", "q1", "q3", "iqr", "p95", "mean",
        "sdr_1mm", "sdr_2mm", "sdr_3mm", "sdr_5mm",
    }


def test_summarize_errors_all_missed_and_empty() -> None:
    s = summarize_errors(np.array([np.nan, np.nan]))
    assert s["n"] == 2 and s["missed"] == 2
    assert math.isnan(s["median"]) and math.isnan(s["mean"])
    assert s["sdr_5mm"] == 0.0
    e = summarize_errors(np.array([]))
    assert e["n"] == 0 and math.isnan(e["sdr_1mm"])


def test_summarize_from_point_errors_end_to_end() -> None:
    true = np.zeros((4, 2))
    pred = np.array([[5.0, 0.0], [10.0, 0.0], [0.0, 8.0], [np.nan, np.nan]])
    e = point_errors_mm(pred, true, (0.25, 0.2))  # -> 1 mm, 2 mm, 2 mm, NaN
    s = summarize_errors(e)
    assert s["median"] == pytest.approx(2.0)
    assert s["sdr_1mm"] == pytest.approx(0.25) and s["sdr_2mm"] == pytest.approx(0.75)


def test_median_abs_error() -> None:
    # |true - pred| = [1, 3, 0.5, 2] (the NaN pair is dropped) -> sorted [0.5, 1, 2, 3]
    # median 1.5, q1 = 0.5 + 0.75 * 0.5 = 0.875, q3 = 2 + 0.25 * 1 = 2.25.
    true = np.array([10.0, -2.0, 4.0, 0.0, np.nan])
    pred = np.array([11.0, 1.0, 3.5, -2.0, 7.0])
    m = median_abs_error(true, pred)
    assert m == pytest.approx({"medae": 1.5, "q1": 0.875, "q3": 2.25, "n": 4})
    m2 = median_abs_error(np.array([np.nan]), np.array([1.0]))
    assert m2["n"] == 0 and math.isnan(m2["medae"])
    with pytest.raises(ValueError):
        median_abs_error(np.zeros(3), np.zeros(2))


# ---------------------------------------------------------------- classification


def test_classification_report_hand_example() -> None:
    # classes I..IV; IV has no support and is never predicted.
    # true: I  I  I   II II    III
    # pred: I  I  II  II None  I
    # Confusion (rows true; cols I II III IV not-measured):
    #   I   [2, 1, 0, 0, 0]
    #   II  [0, 1, 0, 0, 1]
    #   III [1, 0, 0, 0, 0]
    #   IV  [0, 0, 0, 0, 0]
    # I:   TP 2, FP 1 (III->I), FN 1 (I->II)   -> P 2/3, R 2/3, F1 2/3
    # II:  TP 1, FP 1 (I->II),  FN 1 (None)    -> P 1/2, R 1/2, F1 1/2
    # III: TP 0, FP 0, FN 1                    -> P 0 (0/0 -> 0), R 0, F1 0
    # IV:  TP 0, FP 0, FN 0                    -> all 0 (zero_division=0)
    # Macro over the 4 given classes: P = R = F1 = (2/3 + 1/2 + 0 + 0) / 4 = 7/24.
    # Accuracy = 3 TP / 6 = 0.5.
    classes = ["I", "II", "III", "IV"]
    true = ["I", "I", "I", "II", "II", "III"]
    pred = ["I", "I", "II", "II", None, "I"]
    r = classification_report(true, pred, classes)
    assert r["confusion"] == [
        [2, 1, 0, 0, 0],
        [0, 1, 0, 0, 1],
        [1, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    assert r["confusion_columns"] == ["I", "II", "III", "IV", NOT_MEASURED]
    pc = r["per_class"]
    t = 2 / 3
    assert pc["I"] == pytest.approx({"precision": t, "recall": t, "f1": t, "support": 3})
    assert pc["II"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert pc["III"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert pc["IV"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert r["macro"] == pytest.approx({"precision": 7 / 24, "recall": 7 / 24, "f1": 7 / 24})
    assert r["n"] == 6 and r["not_measured"] == 1
    assert r["accuracy"] == pytest.approx(0.5)
    assert r["classes"] == classes


def test_classification_report_precision_recall_differ() -> None:
    # true: A A A B ; pred: A B B B
    # A: TP 1, FP 0, FN 2 -> P 1, R 1/3, F1 = 2*1/(2+0+2) = 0.5
    # B: TP 1, FP 2, FN 0 -> P 1/3, R 1, F1 0.5
    r = classification_report(["A", "A", "A", "B"], ["A", "B", "B", "B"], ["A", "B"])
    a, b = r["per_class"]["A"], r["per_class"]["B"]
    assert a == pytest.approx({"precision": 1, "recall": 1 / 3, "f1": 0.5, "support": 3})
    assert b == pytest.approx({"precision": 1 / 3, "recall": 1, "f1": 0.5, "support": 1})
    assert r["macro"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 0.5})


def test_classification_report_nine_cpak_classes_perfect() -> None:
    classes = ["I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX"]
    labels = classes * 2
    r = classification_report(labels, labels, classes)
    assert r["macro"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0})
    assert np.array_equal(np.array(r["confusion"])[:, :9], 2 * np.eye(9, dtype=int))


def test_classification_report_bad_input() -> None:
    with pytest.raises(ValueError):
        classification_report(["I"], ["I", "II"], ["I", "II"])
    with pytest.raises(ValueError):
        classification_report(["X"], ["I"], ["I", "II"])
    with pytest.raises(ValueError):
        classification_report(["I"], ["X"], ["I", "II"])
    with pytest.raises(ValueError):
        classification_report(["I"], ["I"], ["I", "I"])
