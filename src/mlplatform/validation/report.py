"""Anomaly reports: what is wrong with a batch, in JSON and in words an operator can act on."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

# What to do, per kind of anomaly; the text names the file to edit and the command to run.
_ADVICE = {
    "SCHEMA_NEW_COLUMN": "a column the spec does not know: if it is expected, add it to "
    "usecases/{usecase}.yaml (role `excluded` with a reason if it must not be a feature), run "
    "`mlplatform schema build`, then release the batch; otherwise fix the export and ingest "
    "the corrected file with `quarantine release --replacement`.",
    "SCHEMA_MISSING_COLUMN": "a column the spec requires is absent (renamed or dropped "
    "upstream?): fix the export, or change the spec if the column is really gone.",
    "TYPE": "values of the wrong type (a string in a numeric column?): fix the export; the "
    "gate never converts such values silently.",
    "RANGE": "values outside the declared range (a unit change?): check the source; widen "
    "min/max in the spec only if the new values are real.",
    "DRIFT": "the column's distribution moved away from the reference by more than its "
    "threshold at this batch size (a unit or scale change, a broken join, a filter upstream?): "
    "compare the shares with `mlplatform quarantine show`, confirm with the data owner, then "
    "release with a reason; if the change is real and lasting, retrain so the new champion's "
    "data becomes the reference, or set `gate_drift` for the column in usecases/{usecase}.yaml.",
    "LABEL_SHIFT": "the label's class shares moved away from the reference (an inverted or "
    "re-coded label, a filtered export?): check how the label was produced before any model "
    "trains on it.",
    "OVERLAP": "rows already accepted in earlier batches (a re-sent or overlapping export): "
    "send only new rows, or set `validation.overlap: accept` if overlaps are expected (repeated "
    "rows are never counted twice in training sets).",
    "TOO_SMALL_FOR_DRIFT": "too few rows to tell a change from sampling noise: send larger "
    "batches, release this one if it is known good, or set `drift.too_small: accept`.",
    "CATEGORY": "values outside the allowed categories: add them to `categories` in the spec "
    "if they are legitimate new values, otherwise fix the source.",
    "NULLS": "more missing values than the spec allows: look for a broken join or export.",
    "DUPLICATES": "repeated rows: the batch was probably exported or appended twice.",
    "FUTURE_TIMESTAMP": "event times later than now: check the clock or time zone of the source.",
    "EMPTY_FILE": "the file has no rows: re-export it.",
    "MALFORMED_FILE": "the file is not a well-formed table (truncated or mis-quoted?): re-export "
    "it and ingest the new file with `quarantine release --replacement`.",
    "TOO_FEW_ROWS": "fewer rows than `validation.min_rows`: the export is probably partial.",
    "OTHER": "see the description; fix the source or the spec, then release.",
}


@dataclass(frozen=True)
class Anomaly:
    """One problem found in a batch."""

    kind: str  # one of _ADVICE's keys
    feature: str  # "" for problems of the whole batch
    description: str
    tfdv_types: tuple[str, ...] = ()

    def advice(self, usecase: str) -> str:
        return _ADVICE.get(self.kind, _ADVICE["OTHER"]).format(usecase=usecase)


@dataclass
class ValidationReport:
    usecase: str
    batch_id: str
    source: str
    rows: int
    schema_version: str
    anomalies: list[Anomaly] = field(default_factory=list)
    reference: str | None = None  # what drift was judged against, in words (None: nothing yet)
    warnings: list[Anomaly] = field(default_factory=list)  # recorded, not blocking
    drift: list[dict] = field(default_factory=list)  # per judged column: score and thresholds
    overlap_fraction: float = 0.0  # share of rows already in accepted batches

    @property
    def ok(self) -> bool:
        return not self.anomalies

    def kinds(self) -> set[str]:
        return {a.kind for a in self.anomalies}

    def features(self) -> set[str]:
        return {a.feature for a in self.anomalies}

    def to_json(self) -> str:
        d = asdict(self)
        d["ok"] = self.ok
        for key in ("anomalies", "warnings"):
            for a, obj in zip(d[key], getattr(self, key), strict=True):
                a["what_to_do"] = obj.advice(self.usecase)
        return json.dumps(d, indent=2)

    @classmethod
    def from_json(cls, text: str) -> ValidationReport:
        d = json.loads(text)
        d.pop("ok", None)
        old_ref = d.pop("compared_with", None)  # reports written before reference profiles
        if old_ref and not d.get("reference"):
            d["reference"] = f"batch {old_ref[:12]}"

        def parse(items: list[dict]) -> list[Anomaly]:
            out = []
            for a in items:
                a.pop("what_to_do", None)
                a["tfdv_types"] = tuple(a.get("tfdv_types", ()))
                out.append(Anomaly(**a))
            return out

        return cls(
            anomalies=parse(d.pop("anomalies")), warnings=parse(d.pop("warnings", [])), **d
        )

    def to_text(self) -> str:
        ref = self.reference or "nothing yet (the first accepted batch becomes the reference)"
        head = (
            f"batch {self.batch_id[:12]} ({self.rows} rows) from {self.source}\n"
            f"schema version {self.schema_version}; drift judged against {ref}\n"
        )
        for w in self.warnings:
            head += f"warning [{w.kind}]: {w.description}\n"
        if self.ok:
            return head + "no anomalies: accepted\n"
        lines = [head, f"{len(self.anomalies)} anomal{'y' if len(self.anomalies) == 1 else 'ies'}:"]
        for a in self.anomalies:
            where = f"feature '{a.feature}'" if a.feature else "whole batch"
            lines.append(f"- [{a.kind}] {where}: {a.description}")
            lines.append(f"    what to do: {a.advice(self.usecase)}")
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        """One line per anomaly, for the error that stops the pipeline."""
        return "; ".join(
            f"{a.feature or 'batch'}: {a.kind} ({a.description})" for a in self.anomalies
        )
