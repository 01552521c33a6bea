"""Sliced evaluation with real TFMA, and the fairness gate, on synthetic credit data.

TFMA runs take seconds (a Beam pipeline per call), so the two evaluations (a fair and an
unfair model) are module-scoped and shared by the tests that read them.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, roc_auc_score

from mlplatform.evaluation.fairness import MERGED, GroupCounts, Verdict, fairness_report, judge
from mlplatform.evaluation.slicing import (
    SliceError,
    add_slice_columns,
    check_slices,
    slice_columns,
)
from mlplatform.evaluation.tfma_eval import _tfma_frame, evaluate_predictions
from mlplatform.features.tables import EVENT_TS
from mlplatform.spec import EdgeCase, UseCase, load_spec
from mlplatform.workspace import REPO_ROOT

N_ROWS = 2000
N_UNLABELLED = 10
THRESHOLD = 0.4  # not the default 0.5, so a threshold that is not passed through shows
TINY_EDUCATION = ["0", "5", "6"]  # undocumented codes: ~20 rows each, under min_group_size


@pytest.fixture(scope="module")
def spec() -> UseCase:
    return load_spec(REPO_ROOT / "usecases" / "credit.yaml")


def credit_frame(seed: int = 7) -> pd.DataFrame:
    """Credit-like rows with the columns the credit spec slices on, as the feature tables hold
    them: nullable ints, string categories, a tz-aware event time, a few missing values."""
    rng = np.random.default_rng(seed)
    n = N_ROWS
    education = rng.choice(["1", "2", "3"], n, p=[0.35, 0.45, 0.2]).astype(object)
    education[:60] = np.repeat(TINY_EDUCATION, 20)
    marriage = rng.choice(["1", "2", "3"], n, p=[0.45, 0.45, 0.1]).astype(object)
    marriage[60:70] = None  # -> the "missing" group
    age = rng.integers(21, 71, n).astype(float)
    age[70:75] = np.nan
    no_bills = rng.random(n) < 0.05
    bills = {
        f"bill_amt{i}": pd.array(np.where(no_bills, 0, rng.integers(1, 200_000, n)), "Int64")
        for i in (1, 2, 3)
    }
    label = pd.array(rng.random(n) < 0.3, dtype="Int64")
    label[-N_UNLABELLED:] = pd.NA
    return pd.DataFrame(
        {
            "id": pd.array(np.arange(1, n + 1), "Int64"),
            "limit_bal": pd.array(rng.integers(1, 80, n) * 10_000, "Int64"),
            "sex": rng.choice(["1", "2"], n, p=[0.4, 0.6]),
            "education": education,
            "marriage": marriage,
            "age": age,
            **bills,
            "target": label,
            EVENT_TS: pd.Timestamp("2026-11-30", tz="UTC"),  # TFMA cannot read this column
        }
    )


def probabilities(df: pd.DataFrame, shift_sex2: float = 0.0, seed: int = 11) -> np.ndarray:
    """A decent model: well separated classes. `shift_sex2` raises the scores of sex "2"
    (more false positives there). Tiny education groups get inverted scores: terrible rates
    that only a gate ignoring small groups lets through."""
    rng = np.random.default_rng(seed)
    y = df["target"].fillna(0).to_numpy(dtype=float)
    logit = -1.5 + 3.5 * y + rng.normal(0.0, 1.0, len(df))
    logit += np.where(df["sex"] == "2", shift_sex2, 0.0)
    p = 1.0 / (1.0 + np.exp(-logit))
    return np.where(df["education"].isin(TINY_EDUCATION), 1.0 - p, p)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    df = credit_frame()
    df["probability"] = probabilities(df)
    return df


@pytest.fixture(scope="module")
def fair(frame, spec):
    return evaluate_predictions(frame, spec, label="target", threshold=THRESHOLD)


@pytest.fixture(scope="module")
def unfair(frame, spec):
    df = frame.assign(probability=probabilities(frame, shift_sex2=1.0))
    return evaluate_predictions(df, spec, label="target", threshold=THRESHOLD)


def labelled(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    rows = df[df["target"].notna()]
    return rows["target"].to_numpy(dtype=int), rows["probability"].to_numpy()


# --- slicing (pure pandas) ---------------------------------------------------------------


def test_band_labels_and_missing(spec):
    df = pd.DataFrame(
        {
            "limit_bal": pd.array([10_000, 50_000, 149_999, 300_000, None], "Int64"),
            "age": [20, 25, 44.5, 70, np.nan],
            "sex": ["1", "2", None, "1", "2"],
            "education": ["0", "1", "2", "5", None],
            "marriage": pd.array([1, 2, None, 3, 0], "Int64"),  # an int column with gaps
            **{f"bill_amt{i}": [0, 0, 1, 1, 0] for i in (1, 2, 3)},
        }
    )
    out = add_slice_columns(df, spec, recent_start=None)
    assert out["limit_band"].tolist() == [
        "<50000",
        "50000-150000",
        "50000-150000",
        ">=300000",
        "missing",
    ]
    assert out["age_band"].tolist() == ["<25", "25-35", "35-45", ">=55", "missing"]
    assert out["marriage"].tolist() == ["1", "2", "missing", "3", "0"]
    assert out["sex"].tolist() == ["1", "2", "missing", "1", "2"]
    assert out["edge_no_bill_history"].tolist() == ["yes", "yes", "no", "no", "yes"]
    assert out["edge_undocumented_education"].tolist() == ["yes", "no", "no", "yes", "no"]
    assert df["marriage"].dtype == "Int64"  # the input is not modified


def test_recent_period_and_slice_columns(spec):
    taxi = load_spec(REPO_ROOT / "usecases" / "taxi.yaml")
    ts = pd.to_datetime(["2016-01-01", "2016-06-30", "2016-07-01"], utc=True)
    df = pd.DataFrame(
        {
            EVENT_TS: ts,
            "payment_type": ["Cash", None, "Pcard"],
            "pickup_community_area": [8.0, np.nan, 32.0],  # how a CSV reads an int with gaps
            "company": ["A", "B", None],
            "trip_miles": [0.0, 1.5, 3.0],
            "trip_seconds": [60, 8000, 300],
        }
    )
    out = add_slice_columns(df, taxi, recent_start=pd.Timestamp("2016-06-30", tz="UTC"))
    assert out["recent_period"].tolist() == ["earlier", "recent", "recent"]
    assert out["pickup_community_area"].tolist() == ["8", "missing", "32"]
    assert out["edge_rare_payment_types"].tolist() == ["no", "no", "yes"]
    assert slice_columns(taxi, has_recent=True) == [
        "payment_type",
        "pickup_community_area",
        "company",
        "recent_period",
        "edge_zero_miles",
        "edge_long_trips",
        "edge_rare_payment_types",
    ]
    # Protected attributes that are also segments or bands are sliced once.
    assert slice_columns(spec, has_recent=False) == [
        "education",
        "marriage",
        "limit_band",
        "age_band",
        "sex",
        "edge_no_bill_history",
        "edge_undocumented_education",
    ]


def test_edge_case_matching_no_rows_raises_naming_it(spec):
    df = credit_frame()
    check_slices(df, spec, recent_start=None)  # every declared slice matches some rows
    df["bill_amt2"] = pd.array([5] * len(df), "Int64")
    with pytest.raises(SliceError, match="'no_bill_history' matches no rows"):
        check_slices(df, spec, recent_start=None)


def test_bad_edge_expression_is_a_clear_error(spec):
    bad = spec.model_copy(
        update={
            "slices": spec.slices.model_copy(
                update={"edge_cases": (EdgeCase(name="typo", where="bill_amt9 == 0"),)}
            )
        }
    )
    with pytest.raises(ValueError, match="edge case 'typo': cannot evaluate `bill_amt9 == 0`"):
        add_slice_columns(credit_frame(), bad, recent_start=None)


def test_tfma_input_drops_unlabelled_rows_with_a_warning(frame, spec, caplog):
    with caplog.at_level(logging.WARNING):
        data = _tfma_frame(frame, spec, "target", "probability", None)
    assert f"dropping {N_UNLABELLED} of {N_ROWS} rows without a label" in caplog.text
    assert len(data) == N_ROWS - N_UNLABELLED
    assert data["target"].dtype == "float64" and data["probability"].dtype == "float64"
    assert EVENT_TS not in data.columns  # a tz-aware column makes TFMA fail
    assert all(data[c].map(type).eq(str).all() for c in slice_columns(spec, False))


def test_out_of_range_predictions_are_refused(frame, spec):
    doubled = frame.assign(probability=frame["probability"] * 2)
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        _tfma_frame(doubled, spec, "target", "probability", None)


# --- TFMA evaluation -------------------------------------------------------------------


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_overall_metrics_match_sklearn(fair, frame):
    y, p = labelled(frame)
    overall = fair.overall
    tn, fp, fn, tp = confusion_matrix(y, p > THRESHOLD).ravel()  # TFMA: positive if p > t
    assert overall["example_count"] == N_ROWS - N_UNLABELLED
    # TFMA's AUC sums a 10k-bucket histogram: close to, not exactly, the rank statistic.
    assert overall["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-3)
    assert overall["accuracy"] == pytest.approx(accuracy_score(y, p > THRESHOLD), abs=1e-3)
    # The confusion matrix at an explicit threshold is exact.
    assert overall["precision"] == pytest.approx(tp / (tp + fp), abs=1e-9)
    assert overall["recall"] == pytest.approx(tp / (tp + fn), abs=1e-9)
    assert overall["fpr"] == pytest.approx(fp / (fp + tn), abs=1e-9)
    assert overall["fnr"] == pytest.approx(fn / (fn + tp), abs=1e-9)
    assert overall["mean_label"] == pytest.approx(y.mean(), abs=1e-9)
    assert overall["mean_prediction"] == pytest.approx(p.mean(), abs=1e-9)
    assert overall["calibration"] == pytest.approx(p.sum() / y.sum(), abs=1e-6)


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_slice_metrics_match_sklearn(fair, frame):
    rows = frame[frame["target"].notna() & (frame["sex"] == "2")]
    y, p = labelled(rows)
    sex2 = fair.slice("sex", "2")
    assert sex2["example_count"] == len(rows)
    assert sex2["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-3)


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_per_slice_counts_add_up(fair, spec):
    table = fair.table
    total = fair.overall["example_count"]
    sliced = table[table["slice_column"] != "overall"]
    assert set(sliced["slice_column"]) == set(slice_columns(spec, has_recent=False))
    sums = sliced.groupby("slice_column")["example_count"].sum()
    # Missing values form a "missing" group, so no row falls out of any slice.
    assert (sums == total).all(), sums.to_dict()
    assert fair.slice("marriage", "missing")["example_count"] == 10
    assert fair.slice("age_band", "missing")["example_count"] == 5
    ages = table.loc[table["slice_column"] == "age_band", "slice_value"].tolist()
    assert ages == ["<25", "25-35", "35-45", "45-55", ">=55", "missing"]  # band order


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_result_renders(fair):
    payload = json.loads(fair.to_json())
    assert payload["threshold"] == THRESHOLD
    assert payload["slices"][0]["slice_column"] == "overall"
    markdown = fair.to_markdown()
    assert markdown.splitlines()[0].startswith("| slice_column | slice_value | example_count |")
    with pytest.raises(KeyError, match="values of 'sex' are \\['1', '2'\\]"):
        fair.slice("sex", "3")


# --- fairness gate ------------------------------------------------------------------------


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_unfair_model_fails_the_gate(unfair, spec):
    report = fairness_report(unfair, spec)
    assert report.verdict is Verdict.FAIL and not report.passed
    (sex_fpr,) = [c for c in report.checks if (c.attribute, c.metric) == ("sex", "fpr")]
    assert sex_fpr.verdict is Verdict.FAIL and sex_fpr.low > spec.fairness.max_disparity
    message = sex_fpr.message()
    # The shifted group is the worst one, the other the best; interval and limit are stated.
    assert "between '2' (" in message and "and '1' (" in message
    assert f"[{sex_fpr.low:.3f}, {sex_fpr.high:.3f}]" in message
    assert message.endswith("allowed 0.100: FAIL")
    assert "Fairness gate FAIL" in report.to_markdown()


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_every_attribute_and_metric_is_checked_with_intervals(fair, spec):
    report = fairness_report(fair.table, spec)
    attributes = {(c.attribute, c.metric) for c in report.checks}
    assert attributes == {(a, m) for a in spec.slices.protected for m in spec.fairness.metrics}
    judged = report.groups[report.groups["judged_as"] == report.groups["group"]]
    assert judged["rate_low"].notna().all() and judged["rate_high"].notna().all()
    assert ((judged["rate_low"] <= judged["rate"]) & (judged["rate"] <= judged["rate_high"])).all()
    again = fairness_report(fair.table, spec)  # seeded: the same rows, the same verdict
    assert [c.message() for c in again.checks] == [c.message() for c in report.checks]


@pytest.mark.heavy  # TFMA on Beam: ~20 s for the module's two evaluations
def test_tiny_groups_are_judged_merged_never_dropped(fair, spec):
    report = fairness_report(fair, spec)
    groups = report.groups
    tiny = groups[(groups["attribute"] == "education") & groups["group"].isin(TINY_EDUCATION)]
    assert len(tiny) == len(TINY_EDUCATION) * len(spec.fairness.metrics)
    by_fpr, by_fnr = tiny[tiny["metric"] == "fpr"], tiny[tiny["metric"] == "fnr"]
    assert (by_fpr["judged_as"] == MERGED).all(), by_fpr
    assert by_fpr["note"].str.contains("under 30: judged as 'small groups merged'").all()
    # ~6 defaulters each: 18 merged are still too few for an FNR, and the table says so.
    assert by_fnr["note"].str.contains("too small even merged").all(), by_fnr
    merged = groups[(groups["attribute"] == "education") & (groups["group"] == MERGED)]
    assert list(merged["note"]) == ["0, 5, 6"]
    fpr = merged[merged["metric"] == "fpr"].iloc[0]
    assert fpr["rate"] > 0.5 and fpr["example_count"] == 60  # inverted scores, caught
    (edu_fpr,) = [c for c in report.checks if (c.attribute, c.metric) == ("education", "fpr")]
    assert edu_fpr.verdict is Verdict.FAIL and edu_fpr.worst_group == MERGED


def _counts(name, pos, neg, fnr, fpr):
    return GroupCounts(name, pos, neg, round(pos * fnr), round(neg * fpr))


def test_pass_inconclusive_and_fail_follow_the_interval(spec):
    big = {"sex": [_counts("1", 4000, 9000, 0.30, 0.10), _counts("2", 4000, 9000, 0.31, 0.11)]}
    assert judge(big, spec).verdict is Verdict.PASS
    small = {"sex": [_counts("1", 60, 200, 0.30, 0.10), _counts("2", 60, 200, 0.38, 0.12)]}
    report = judge(small, spec)
    assert report.verdict is Verdict.INCONCLUSIVE
    fnr = next(c for c in report.checks if c.metric == "fnr")
    assert fnr.low <= spec.fairness.max_disparity < fnr.high
    assert fnr.rows_needed > 260 and f"about {fnr.rows_needed:,} test rows" in fnr.message()
    wide = {"sex": [_counts("1", 400, 900, 0.20, 0.10), _counts("2", 400, 900, 0.45, 0.11)]}
    assert judge(wide, spec).verdict is Verdict.FAIL


def test_more_checks_widen_each_interval(spec):
    one = {"sex": [_counts("1", 300, 900, 0.30, 0.10), _counts("2", 300, 900, 0.36, 0.12)]}
    many = {**one, **{f"a{i}": one["sex"] for i in range(5)}}
    lone = judge(one, spec).checks[0]
    crowd = judge(many, spec).checks[0]
    assert crowd.level > lone.level >= spec.fairness.confidence  # Holm: corrected
