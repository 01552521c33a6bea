"""The selection policy: quality subject to serving constraints, explained with numbers."""

from __future__ import annotations

from mlplatform.selection import Candidate, pareto_plot, select


def _c(family, quality, p99, fair="pass", size=1.0):
    return Candidate(
        family,
        f"run-{family}",
        f"models:/{family}",
        quality,
        quality,
        p99 / 2,
        p99,
        10_000,
        size,
        fair,
        () if fair == "pass" else ("sex: fnr gap 0.2",),
    )


def test_best_quality_within_budget_wins(taxi):
    sel = select(
        [_c("keras", 0.93, 25.0), _c("xgboost", 0.92, 4.0), _c("logistic", 0.90, 1.0)], taxi
    )
    assert sel.winner.family == "xgboost"  # keras is better but over the 10 ms budget
    assert "exceeds the 10" in sel.reasons["keras"]
    assert "behind on quality" in sel.reasons["logistic"]
    md = sel.markdown(taxi)
    assert "Winner: xgboost" in md and "p99 / fastest" in md


def test_unfair_candidate_is_excluded(credit):
    sel = select([_c("xgboost", 0.80, 3.0, fair="fail"), _c("logistic", 0.78, 1.0)], credit)
    assert sel.winner.family == "logistic"
    assert "fairness gate FAIL" in sel.reasons["xgboost"]


def test_a_pass_is_preferred_to_an_inconclusive_and_an_inconclusive_may_win(credit):
    sel = select(
        [_c("xgboost", 0.80, 3.0, fair="inconclusive"), _c("logistic", 0.76, 1.0),
         _c("keras", 0.82, 4.0, fair="fail")],
        credit,
    )
    assert sel.winner.family == "logistic"
    assert "INCONCLUSIVE and logistic's is PASS" in sel.reasons["xgboost"]
    assert "| INCONCLUSIVE |" in sel.markdown(credit) and "| FAIL |" in sel.markdown(credit)
    alone = select([_c("xgboost", 0.80, 3.0, fair="inconclusive"),
                    _c("keras", 0.82, 4.0, fair="fail")], credit)
    assert alone.winner.family == "xgboost"
    assert "business owner's explicit acceptance" in alone.reasons["xgboost"]


def test_no_eligible_candidate(taxi, tmp_path):
    sel = select([_c("keras", 0.93, 50.0), _c("xgboost", 0.92, 40.0)], taxi)
    assert sel.winner is None
    assert "No candidate satisfies" in sel.markdown(taxi)
    png = pareto_plot(sel, taxi, tmp_path / "p.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
