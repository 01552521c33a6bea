"""The use-case spec: the one place that knows a dataset's columns.

A use case is described by one YAML file under ``usecases/``. Everything downstream (the
TFDV schema, Feast definitions, slicing specs, fairness groups) is derived from it.
"""

from __future__ import annotations

import ast
import hashlib
import json
import keyword
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mlplatform.yamlmarks import MarkedYAMLError, line_of, load_marked


class SpecError(ValueError):
    """A use-case file that cannot be used, with the key and line that are wrong."""


class _LocatedError(ValueError):
    """A cross-field error that knows which key it is about (so the loader finds its line)."""

    def __init__(self, loc: tuple[str | int, ...], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ColumnType(StrEnum):
    INT = "int"
    FLOAT = "float"
    CATEGORY = "category"
    STRING = "string"


class Role(StrEnum):
    FEATURE = "feature"
    LABEL = "label"
    TIMESTAMP = "timestamp"
    ID = "id"
    EXCLUDED = "excluded"


class Column(_Strict):
    """One raw column of a batch, with its validation constraints."""

    name: str
    type: ColumnType
    role: Role = Role.FEATURE
    description: str = ""
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = Field(
        default=None, description="Allowed values; anything else is an anomaly."
    )
    max_unseen_fraction: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Share of values outside `categories` tolerated (TFDV min_domain_mass).",
    )
    max_null_fraction: float = Field(default=0.0, ge=0, le=1)
    gate_drift: float | Literal["off"] | None = Field(
        default=None,
        description="The validation gate: distance to the reference profile above which a "
        "batch is quarantined (Jensen-Shannon on deciles for numbers, L-infinity of shares "
        "for categories and the label). Absent: `drift.gate_threshold`. `off` needs a "
        "`reason`. Features and the label only.",
    )
    retrain_drift: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Monitoring: the same distance, served traffic vs the training data, "
        "above which a retraining is triggered. Absent: shown, never acted on.",
    )
    reason: str = Field(
        default="", description="Why an excluded column is excluded, or why its drift is off."
    )

    @model_validator(mode="before")
    @classmethod
    def _migrate(cls, data):
        if isinstance(data, dict):
            if "drift_threshold" in data:
                raise ValueError(
                    f"column {data.get('name')!r}: `drift_threshold` was split by use: "
                    "`retrain_drift` (monitoring triggers retraining) and `gate_drift` (the "
                    "validation gate; every feature and the label are judged by default, "
                    "see `drift.gate_threshold`)"
                )
            if data.get("gate_drift") is False:  # YAML reads a bare `off` as false
                data = {**data, "gate_drift": "off"}
        return data

    @model_validator(mode="after")
    def _check(self) -> Column:
        if isinstance(self.gate_drift, float) and not 0 < self.gate_drift <= 1:
            raise ValueError(f"column {self.name!r}: gate_drift must be in (0, 1] or `off`")
        if self.gate_drift == "off" and not self.reason:
            raise ValueError(f"column {self.name!r}: `gate_drift: off` needs a `reason`")
        if self.role not in (Role.FEATURE, Role.LABEL) and self.gate_drift not in (None, "off"):
            raise ValueError(
                f"column {self.name!r}: gate_drift applies to features and the label only"
            )
        if self.retrain_drift is not None and self.role is not Role.FEATURE:
            raise ValueError(f"column {self.name!r}: retrain_drift applies to features only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"column {self.name!r}: min {self.min} is above max {self.max}")
        if self.categories is not None and self.type is not ColumnType.CATEGORY:
            raise ValueError(f"column {self.name!r}: categories need type 'category'")
        if (self.min is not None or self.max is not None) and self.type not in (
            ColumnType.INT,
            ColumnType.FLOAT,
        ):
            raise ValueError(f"column {self.name!r}: min/max need a numeric type")
        if self.role is Role.EXCLUDED and not self.reason:
            raise ValueError(f"column {self.name!r}: an excluded column needs a `reason`")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in (ColumnType.INT, ColumnType.FLOAT)


class Label(_Strict):
    """The label column, and which of its values is the positive class (1) if it is not 0/1."""

    column: str
    positive: str | None = Field(
        default=None,
        description="The value that means 1, spelled as in the data (`>50K`, `bad`, `yes`); "
        "every other declared category means 0. Absent: the column holds 0/1 or true/false.",
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data):
        if isinstance(data, str):
            return {"column": data}
        if isinstance(data, dict) and "positive" in data:
            pos = data["positive"]
            if isinstance(pos, bool):
                raise ValueError(
                    "label.positive was read as a YAML boolean; quote it as the data spells it, "
                    'e.g. positive: "yes" or positive: "True"'
                )
            if isinstance(pos, int | float):
                data = {**data, "positive": str(pos)}
        return data


class Source(_Strict):
    path: str = Field(description="CSV or parquet file, relative to the repository root.")
    format: Literal["csv", "parquet"] = "csv"


class EventTime(_Strict):
    """Where the event time comes from; Feast needs one for point-in-time joins."""

    column: str | None = Field(
        default=None, description="Unix-seconds column; absent means use the ingestion time."
    )
    future_tolerance_s: int = Field(
        default=3600, ge=0, description="Event times later than now + this are anomalies."
    )


class Entity(_Strict):
    name: str
    key: str
    derive: Literal["column", "row_number"] = Field(
        default="column",
        description="`column`: the key is a raw column; `row_number`: batch id + row number "
        "(for data without a natural key).",
    )


class Band(_Strict):
    """A numeric column cut into named bands, used as a slice or protected group."""

    name: str
    column: str
    edges: tuple[float, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _sorted(self) -> Band:
        if list(self.edges) != sorted(self.edges):
            raise ValueError(f"band {self.name!r}: edges must be increasing")
        return self


class EdgeCase(_Strict):
    name: str
    where: str = Field(description="A pandas query over raw columns, e.g. `trip_miles == 0`.")


class RecentPeriod(_Strict):
    months: int = Field(default=6, ge=1)


class Slices(_Strict):
    segments: tuple[str, ...] = ()
    bands: tuple[Band, ...] = ()
    recent_period: RecentPeriod | None = None
    edge_cases: tuple[EdgeCase, ...] = ()
    protected: tuple[str, ...] = Field(
        default=(), description="Columns or band names whose groups are checked for fairness."
    )


class Aggregate(_Strict):
    """Per-group statistics computed from accepted batches and served from Feast."""

    name: str
    group_by: str
    window_days: int = Field(default=30, ge=1)
    mean_of: tuple[str, ...] = ()


class Features(_Strict):
    aggregates: tuple[Aggregate, ...] = ()
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection: str = "127.0.0.1:6379"


class Validation(_Strict):
    max_duplicate_fraction: float = Field(default=0.01, ge=0, le=1)
    min_rows: int = Field(default=1, ge=1)
    overlap: Literal["quarantine", "accept"] = Field(
        default="quarantine",
        description="A batch whose rows are already in accepted batches (re-sent, re-ordered, "
        "overlapping): `quarantine` above `max_overlap_fraction`, or `accept` (the repeated "
        "rows are reported and never enter a training set twice).",
    )
    max_overlap_fraction: float = Field(default=0.01, ge=0, le=1)


class Drift(_Strict):
    """How distance from the reference profile is judged (gate and monitoring alike)."""

    alpha: float = Field(
        default=0.01,
        gt=0,
        lt=0.5,
        description="Chance that a clean batch (a random sample of the reference's source) is "
        "flagged by sampling noise alone, all judged columns together.",
    )
    gate_threshold: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="The gate's default `gate_drift` for every feature and the label.",
    )
    min_rows: int = Field(
        default=100,
        ge=1,
        description="The gate judges no drift on fewer rows: too few to tell a change from "
        "noise (schema checks still apply).",
    )
    too_small: Literal["hold", "accept"] = Field(
        default="hold",
        description="A batch below `min_rows`: `hold` quarantines it for an operator, `accept` "
        "lets it in with a recorded warning.",
    )


class Constraints(_Strict):
    latency_p99_ms: float = Field(
        default=10.0, gt=0, description="Single-row p99 through the packaged pyfunc."
    )
    max_artifact_mb: float = Field(default=200.0, gt=0)


class Split(_Strict):
    """How the held-out set is chosen: the most recent period when there are event times."""

    strategy: Literal["time", "random"] = "time"
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="For `random`.")
    validation_fraction: float = Field(
        default=0.15,
        gt=0,
        lt=0.5,
        description="Share of the training part kept for early stopping.",
    )
    seed: int = 42


class Fairness(_Strict):
    """Per-group error rates on protected attributes, and the disparity allowed."""

    metrics: tuple[Literal["fpr", "fnr", "error_rate"], ...] = ("fpr", "fnr")
    max_disparity: float = Field(
        default=0.1, gt=0, le=1, description="Largest allowed gap between two groups' rates."
    )
    min_group_size: int = Field(
        default=30,
        ge=1,
        description="A group whose rate rests on fewer rows (positives for FNR, negatives "
        "for FPR) is reported as too small and judged merged with the attribute's other "
        "small groups.",
    )
    confidence: float = Field(
        default=0.9,
        gt=0.5,
        lt=1,
        description="Level of each gap's interval, Holm-corrected across all checks: FAIL "
        "when the whole interval is above `max_disparity`, PASS when at or below it, "
        "INCONCLUSIVE otherwise.",
    )
    bootstrap: int = Field(default=2000, ge=200, description="Bootstrap replicates per group.")
    seed: int = Field(default=7, description="Seed of the bootstrap: the same rows, the same "
                      "verdict.")
    mitigation: Literal["none", "reweigh"] = Field(
        default="none",
        description="'reweigh': training rows are weighted so that the label is independent "
        "of every protected attribute (mlplatform.training.mitigation).",
    )


class Selection(_Strict):
    """Which candidate wins: best `metric` on `slice` among those within the latency budget."""

    metric: Literal["auc", "accuracy"] = "auc"
    slice: Literal["recent", "overall"] = "recent"
    champion_margin: float = Field(
        default=0.002, ge=0, description="How much a challenger must beat the champion by."
    )
    threshold: float = Field(default=0.5, gt=0, lt=1, description="Decision threshold.")


class Kpi(_Strict):
    """The business KPI, computed on labelled traffic by mlplatform.monitoring.performance."""

    name: str
    description: str
    kind: Literal["positive_recall", "expected_loss"] | None = Field(
        default=None,
        description="`positive_recall`: share of positive cases flagged at the threshold "
        "(higher is better); `expected_loss`: missed positives x `exposure_column` x "
        "`loss_given_default`, plus `review_cost` per flagged row, per row (lower is better).",
    )
    exposure_column: str | None = Field(
        default=None, description="expected_loss: the amount at risk of a row (a raw column)."
    )
    loss_given_default: float = Field(default=1.0, gt=0, le=1)
    review_cost: float = Field(default=0.0, ge=0, description="expected_loss: per flagged row.")

    @model_validator(mode="after")
    def _exposure(self) -> Kpi:
        if self.kind == "expected_loss" and not self.exposure_column:
            raise ValueError("kpi: kind 'expected_loss' needs an `exposure_column`")
        return self


class Alerts(_Strict):
    sink: Literal["log", "file", "webhook", "alertmanager"] = "file"
    path: str = Field(default="alerts.jsonl", description="For `file`: relative to the workspace.")
    url: str | None = Field(
        default=None,
        description="For `webhook`: the URL posted to; for `alertmanager`: Alertmanager's base "
        "URL (the v2 API, POST /api/v2/alerts).",
    )

    @model_validator(mode="after")
    def _url(self) -> Alerts:
        if self.sink in ("webhook", "alertmanager") and not self.url:
            raise ValueError(f"alerts: sink {self.sink!r} needs a `url`")
        return self


class ModelCard(_Strict):
    """What a model card says that no measurement can: written by people, printed as is.
    (Intended use and limitations are the use case's own `intended_use` / `limitations`.)"""

    ethical_considerations: str = Field(
        default="", description="Who could be harmed and how; what the fairness gate covers."
    )
    out_of_scope: str = Field(default="", description="Uses the model must not be put to.")
    owners: tuple[str, ...] = Field(default=(), description="Teams or people answerable for it.")


class UseCase(_Strict):
    """A use case: data, label, features, slices, constraints and KPI."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    description: str = ""
    source: Source
    label_spec: Label = Field(
        alias="label",
        description="The label column: `label: big_tipper` for a 0/1 (or true/false) column, "
        "`label: {column: income, positive: \">50K\"}` for one in its own vocabulary.",
    )
    event_time: EventTime = EventTime()
    entity: Entity
    columns: tuple[Column, ...] = Field(min_length=2)
    slices: Slices = Slices()
    features: Features = Features()
    validation: Validation = Validation()
    drift: Drift = Drift()
    constraints: Constraints = Constraints()
    split: Split = Split()
    fairness: Fairness = Fairness()
    selection: Selection = Selection()
    kpi: Kpi | None = None
    alerts: Alerts = Alerts()
    intended_use: str = ""
    limitations: str = ""
    model_card: ModelCard | None = None

    @model_validator(mode="after")
    def _cross_check(self) -> UseCase:
        names = [c.name for c in self.columns]
        known = set(names)
        for i, n in enumerate(names):
            if names.index(n) != i:
                raise _LocatedError(("columns", i, "name"), f"column {n!r} is listed twice")

        def need(ref: str, loc: tuple[str | int, ...]) -> None:
            if ref not in known:
                raise _LocatedError(loc, f"unknown column {ref!r}; columns are {names}")

        need(self.label, ("label", "column"))
        if self.column(self.label).role is not Role.LABEL:
            raise _LocatedError(
                ("label", "column"), f"column {self.label!r} must have role 'label'"
            )
        _check_classes(self.label_spec, self.column(self.label))
        if sum(c.role is Role.LABEL for c in self.columns) != 1:
            raise _LocatedError(("columns",), "exactly one column must have role 'label'")
        if self.event_time.column:
            need(self.event_time.column, ("event_time", "column"))
        elif self.split.strategy == "time":
            raise _LocatedError(
                ("split", "strategy"), "a time split needs event_time.column; use `random`"
            )
        if self.selection.slice == "recent" and self.slices.recent_period is None:
            raise _LocatedError(
                ("selection", "slice"), "selecting on `recent` needs slices.recent_period"
            )
        if self.entity.derive == "column":
            need(self.entity.key, ("entity", "key"))
        band_names = {b.name for b in self.slices.bands}
        for i, b in enumerate(self.slices.bands):
            need(b.column, ("slices", "bands", i, "column"))
        for i, s in enumerate(self.slices.segments):
            need(s, ("slices", "segments", i))
        for i, p in enumerate(self.slices.protected):
            if p not in known and p not in band_names:
                raise _LocatedError(
                    ("slices", "protected", i), f"{p!r} is neither a column nor a band"
                )
        for i, e in enumerate(self.slices.edge_cases):
            for ref in sorted(_query_names(e.where, e.name)):
                need(ref, ("slices", "edge_cases", i, "where"))
        if self.kpi is not None and self.kpi.exposure_column:
            need(self.kpi.exposure_column, ("kpi", "exposure_column"))
        for i, a in enumerate(self.features.aggregates):
            need(a.group_by, ("features", "aggregates", i, "group_by"))
            for j, m in enumerate(a.mean_of):
                need(m, ("features", "aggregates", i, "mean_of", j))
        return self

    @property
    def label(self) -> str:
        """The label column's name (its classes: `label_spec`)."""
        return self.label_spec.column

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def feature_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.role is Role.FEATURE)

    def gate_thresholds(self) -> dict[str, float]:
        """The columns the gate judges for drift (features and label), with thresholds."""
        return {
            c.name: self.drift.gate_threshold if c.gate_drift is None else c.gate_drift
            for c in self.columns
            if c.role in (Role.FEATURE, Role.LABEL) and c.gate_drift != "off"
        }

    def retrain_thresholds(self) -> dict[str, float]:
        """Every feature with the threshold monitoring shows it against; those with a
        `retrain_drift` act (trigger), the others use the gate's threshold and are shown."""
        out = {}
        for c in self.feature_columns:
            gate = self.drift.gate_threshold if c.gate_drift in (None, "off") else c.gate_drift
            out[c.name] = c.retrain_drift if c.retrain_drift is not None else gate
        return out

    def retrain_features(self) -> list[str]:
        return [c.name for c in self.feature_columns if c.retrain_drift is not None]

    def spec_hash(self) -> str:
        """A stable hash of the spec's content, recorded in lineage. The model card's prose
        is left out: rewording it changes no model, so it must not break lineage."""
        content = self.model_dump(mode="json", exclude={"model_card", "label_spec"})
        # A 0/1 label hashes as before the label took a positive class: same spec, same hash.
        lab = self.label_spec
        content["label"] = lab.column if lab.positive is None else lab.model_dump(mode="json")
        blob = json.dumps(content, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


BINARY_SPELLINGS = frozenset({"0", "1", "true", "false"})


def _check_classes(label: Label, col: Column) -> None:
    """A label the encoder can map to 0/1: its classes named, the positive one among them."""
    if label.positive is None:
        if col.type is ColumnType.FLOAT or col.type is ColumnType.STRING:
            raise _LocatedError(
                ("label",),
                f"label column {col.name!r} is {col.type.value}: a label is int 0/1, or a "
                f"category whose positive class is named: label: {{column: {col.name}, "
                "positive: <value>}",
            )
        if col.categories is not None and not {
            c.lower() for c in col.categories
        } <= BINARY_SPELLINGS:
            raise _LocatedError(
                ("label",),
                f"label column {col.name!r} has classes {list(col.categories)}: name the "
                f"positive one: label: {{column: {col.name}, positive: {col.categories[0]}}}",
            )
        if col.type is ColumnType.INT and (col.min is None or col.min < 0 or
                                           col.max is None or col.max > 1):
            raise _LocatedError(
                ("label",),
                f"int label column {col.name!r} needs min: 0 and max: 1 (or name its positive "
                "class: label: {column: ..., positive: ...})",
            )
        return
    if col.type is not ColumnType.CATEGORY or not col.categories:
        raise _LocatedError(
            ("label", "positive"),
            f"a named positive class needs the label column {col.name!r} to be a category "
            "that lists its classes (type: category, categories: [...])",
        )
    if label.positive not in col.categories:
        raise _LocatedError(
            ("label", "positive"),
            f"positive class {label.positive!r} is not among {col.name!r}'s categories "
            f"{list(col.categories)}",
        )
    if len(col.categories) < 2:
        raise _LocatedError(
            ("label", "positive"), f"label column {col.name!r} declares a single class"
        )


def _query_names(expr: str, name: str) -> set[str]:
    """The column names an edge case reads; a name that is not an identifier (`capital-gain`,
    `mean radius`) is quoted in backticks, as pandas' `eval` reads it."""
    quoted: dict[str, str] = {}

    def placeholder(m: re.Match) -> str:
        key = f"_quoted_{len(quoted)}_"
        quoted[key] = m.group(1)
        return key

    if expr.count("`") % 2:
        raise ValueError(f"edge case {name!r}: `where` has an unclosed backtick")
    plain = re.sub(r"`([^`]*)`", placeholder, expr)
    try:
        tree = ast.parse(plain, mode="eval")
    except SyntaxError as exc:
        raise ValueError(
            f"edge case {name!r}: `where` is not an expression: {exc.msg} (quote a column "
            "name that is not an identifier in backticks: `capital-gain` > 0)"
        ) from exc
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - {"True", "False", "None"}
    return {quoted.get(n, n) for n in names}


def quote_name(column: str) -> str:
    """A column as an edge-case expression names it: bare if it is an identifier."""
    return column if column.isidentifier() and not keyword.iskeyword(column) else f"`{column}`"


def load_spec(path: str | Path) -> UseCase:
    """Load and validate a use-case YAML; errors name the key and its line."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such use-case file (use-cases live in usecases/<name>.yaml)")
    try:
        data, marks = load_marked(path.read_text())
    except MarkedYAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SpecError(f"{path}: the top level must be a mapping of keys")
    try:
        return UseCase.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, _LocatedError):
                loc = loc + cause.loc
                err = {**err, "msg": str(cause)}
            key = ".".join(str(p) for p in loc) or "(top level)"
            line = line_of(marks, loc)
            where = f"line {line}" if line else "no line"
            lines.append(f"  {key} ({where}): {err['msg']}")
        raise SpecError(f"{path}: invalid use-case spec\n" + "\n".join(lines)) from exc


def resolve_usecase(name_or_path: str, root: Path) -> Path:
    """Map `taxi` to `usecases/taxi.yaml`; pass paths through."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p if p.is_absolute() else (Path.cwd() / p)
    return root / "usecases" / f"{name_or_path}.yaml"


def load_usecase(name_or_path: str) -> UseCase:
    """The use case named `taxi` (under the project root) or given by a YAML path."""
    from mlplatform.workspace import PROJECT_ROOT

    return load_spec(resolve_usecase(name_or_path, PROJECT_ROOT))


def spec_json_schema() -> dict:
    return UseCase.model_json_schema()
