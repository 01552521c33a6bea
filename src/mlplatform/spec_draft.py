"""A first use-case spec drafted from a data file (`mlplatform init`).

Everything written is what the data showed, widened by stated margins, with a comment that says
what was inferred and what a person must review. The draft is validated like any spec before it
is written; it takes an ordinary CSV to `make run` without edits, and is the place to tighten
constraints afterwards.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pyarrow_hotfix  # noqa: F401 - refuses pickled extension types in user files (CVE-2023-47248)
import yaml

from mlplatform.data.ingest import detect_format
from mlplatform.spec import BINARY_SPELLINGS, quote_name

MAX_CATEGORIES = 50  # more distinct strings than this: free text (`string`), no allowed list
MAX_LABEL_CLASSES = 20
RANGE_MARGIN = 1.0  # a written bound lies this many observed spans beyond the extreme
LIGHT_TAIL = 1.3  # extreme-to-p90 over p50-to-p90 (and skew) at most this: a short tail
NULL_MARGIN_SIGMAS = 3.0  # allowed null fraction: observed + 3 standard errors + 1 point
MIN_EDGE_ROWS = 5  # an edge case must be expected to hold this many held-out rows
TEST_FRACTION = 0.25
PROTECTED_HINTS = re.compile(
    r"(^|[^a-z])(sex|gender|race|ethnic\w*|age|religion|marital\w*|married|marriage|"
    r"nationality|native\w*|disab\w*|pregnan\w*)([^a-z]|$)",
    re.IGNORECASE,
)
KEY_HINT = re.compile(r"(^|[^a-z])(id|key|uuid)$", re.IGNORECASE)
TIME_HINT = re.compile(r"time|date|timestamp|_ts$|^ts$", re.IGNORECASE)
UNIX_RANGE = (3.0e8, 4.2e9)  # 1979 .. 2103 in seconds: an integer column in it may be a time


class DraftError(ValueError):
    """The data cannot make a use case as given; the message says what to pass instead."""


@dataclass
class ColumnDraft:
    """One column as the data showed it, and the spec entry written for it."""

    entry: dict
    note: str = ""


@dataclass
class Draft:
    name: str
    source: str
    fmt: str
    rows: int
    label: dict
    columns: list[ColumnDraft] = field(default_factory=list)
    entity: dict = field(default_factory=dict)
    event_time: dict = field(default_factory=dict)
    split: dict = field(default_factory=dict)
    selection: dict = field(default_factory=dict)
    recent_period: dict | None = None
    segments: list[str] = field(default_factory=list)
    edge_cases: list[dict] = field(default_factory=list)
    protected_hints: list[str] = field(default_factory=list)
    duplicate_fraction: float = 0.0
    notes: list[str] = field(default_factory=list)


def read_table(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as pandas with the types its reader infers (as ingest reads it), and format."""
    fmt = detect_format(path)
    try:
        if fmt == "parquet":
            table = pq.read_table(path)
        else:
            table = pacsv.read_csv(
                path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True)
            )
            bools = [n for n, t in zip(table.column_names, table.schema.types, strict=True)
                     if pa.types.is_boolean(t)]
            if bools:  # a category keeps the data's own spelling (`True`, `yes`)
                table = pacsv.read_csv(
                    path,
                    convert_options=pacsv.ConvertOptions(
                        strings_can_be_null=True, column_types={b: pa.string() for b in bools}
                    ),
                )
    except (pa.ArrowInvalid, OSError) as exc:
        raise DraftError(f"{path}: cannot be read as a table: {exc}") from exc
    if table.num_rows == 0:
        raise DraftError(f"{path}: holds no rows to infer a spec from")
    return table.to_pandas(types_mapper={pa.int64(): pd.Int64Dtype()}.get), fmt


def draft_spec(
    name: str, path: Path, label: str, positive: str | None, source: str
) -> Draft:
    """Infer a spec for the data in `path`; `source` is how the spec will name the file."""
    df, fmt = read_table(path)
    if label not in df.columns:
        raise DraftError(f"--label {label!r} is not a column of {path}; columns are "
                         f"{list(df.columns)}")
    d = Draft(name=name, source=source, fmt=fmt, rows=len(df), label={"column": label})
    n = len(df)
    d.duplicate_fraction = float(df.duplicated().mean())
    time_col = _event_time_column(df, label)
    key_col = _key_column(df, label, time_col)
    for col in df.columns:
        if col == label:
            d.columns.append(_label_draft(df[col], positive, d))
        elif col == time_col:
            d.columns.append(_timestamp_draft(df[col]))
        elif col == key_col:
            d.columns.append(ColumnDraft({"name": col, "type": _int_or_string(df[col]),
                                          "role": "id"}, "unique in every row: the entity key"))
        else:
            d.columns.append(_feature_draft(df[col], n))
    _entity(d, key_col)
    _timing(d, df, time_col)
    _slices(d, df, label)
    return d


def _label_draft(s: pd.Series, positive: str | None, d: Draft) -> ColumnDraft:
    values = s.dropna()
    classes = [str(v) for v in values.astype(str).value_counts().index]
    null = _null_limit(s)
    if len(classes) < 2:
        raise DraftError(f"label {s.name!r} has {len(classes)} class(es) {classes}: a "
                         "classifier needs two")
    if len(classes) > MAX_LABEL_CLASSES:
        raise DraftError(f"label {s.name!r} has {len(classes)} distinct values: not a class "
                         "label (a regression target is not supported)")
    base = {"name": s.name, "role": "label", **({"max_null_fraction": null} if null else {})}
    if positive is not None:
        if positive not in classes:
            raise DraftError(f"--positive {positive!r} is not a value of {s.name!r}; its "
                             f"classes are {classes}")
        d.label["positive"] = positive
        rest = [c for c in classes if c != positive]
        note = (f"classes {classes}: 1 = {positive!r}, 0 = "
                + (repr(rest[0]) if len(rest) == 1 else f"the other {len(rest)}"))
        return ColumnDraft({**base, "type": "category", "categories": sorted(classes)}, note)
    if pd.api.types.is_integer_dtype(s.dtype) and set(values.astype(int)) <= {0, 1}:
        return ColumnDraft({**base, "type": "int", "min": 0, "max": 1}, "0/1")
    if set(c.lower() for c in classes) <= BINARY_SPELLINGS:
        truthy = [c for c in classes if c.lower() in ("1", "true")]
        d.label["positive"] = truthy[0] if truthy else None
        if d.label["positive"] is None:
            raise DraftError(f"label {s.name!r} holds only {classes}: a classifier needs two")
        return ColumnDraft({**base, "type": "category", "categories": sorted(classes)},
                           f"true/false: 1 = {d.label['positive']!r}")
    raise DraftError(
        f"label {s.name!r} has classes {sorted(classes)}: say which one is the "
        f"positive class (1), e.g. --positive {classes[-1]!r}"
        + (" (the rarer one is usually the one to find)" if len(classes) == 2 else
           "; the others become 0")
    )


def _timestamp_draft(s: pd.Series) -> ColumnDraft:
    lo = int(s.min())
    entry = {"name": s.name, "type": "int", "role": "timestamp", "min": lo - lo % 86400}
    return ColumnDraft(entry, "unix seconds: the event time (Feast joins and the time split)")


def _feature_draft(s: pd.Series, n: int) -> ColumnDraft:
    null = _null_limit(s)
    extra = {"max_null_fraction": null} if null else {}
    values = s.dropna()
    if len(values) == 0:
        return ColumnDraft({"name": s.name, "type": "string", "role": "excluded",
                            "max_null_fraction": 1.0, "reason": "empty in the sample it was "
                            "inferred from"}, "no values: excluded")
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_numeric_dtype(s.dtype):
        x = values.astype(float).to_numpy()
        kind = "int" if pd.api.types.is_integer_dtype(s.dtype) or bool(
            np.all(np.floor(x) == x)) else "float"
        lo, hi, note = numeric_bounds(x, integral=kind == "int")
        bounds = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
        return ColumnDraft({"name": s.name, "type": kind, **bounds, **extra}, note)
    text = values.astype(str)
    distinct = text.value_counts()
    if len(distinct) <= MAX_CATEGORIES and len(distinct) <= max(2, 0.5 * len(values)):
        cats = sorted(distinct.index)
        return ColumnDraft({"name": s.name, "type": "category", "categories": cats, **extra},
                           f"{len(cats)} values seen; any other is an anomaly")
    return ColumnDraft(
        {"name": s.name, "type": "string", **extra},
        f"{len(distinct)} distinct values (over {MAX_CATEGORIES}): free text, no allowed "
        "list; the model keeps the frequent values, the rest share one 'other' code",
    )


def numeric_bounds(
    x: np.ndarray, integral: bool = False
) -> tuple[float | None, float | None, str]:
    """(min, max, comment) for a numeric column from one sample of it.

    A range is for impossible values (a sign flip, a sentinel, a format change); distribution
    changes inside it are the drift gate's. A sample's extreme is a poor bound for the next
    batch when the tail is long: a bound is written only on a side that is not skewed out
    (p50-p90 at most `LIGHT_TAIL` times p10-p50) and whose extreme is near (at most
    `LIGHT_TAIL` times p50-p90 beyond p90), `RANGE_MARGIN` spans out; a never-negative
    quantity keeps 0 as its floor. The false-quarantine rate of
    this rule on ordinary batches is measured by bench/init_ranges.py.
    """
    lo, hi = float(np.min(x)), float(np.max(x))
    q10, q50, q90 = (float(q) for q in np.quantile(x, [0.1, 0.5, 0.9]))
    span = hi - lo
    upper = lower = None
    light_up = span > 0 and _light(hi - q90, q90 - q50) and _light(q90 - q50, q50 - q10)
    light_down = span > 0 and _light(q10 - lo, q50 - q10) and _light(q50 - q10, q90 - q50)
    if light_up:
        upper = hi + RANGE_MARGIN * span
    if lo >= 0:
        lower = max(0.0, lo - RANGE_MARGIN * span) if light_down else 0.0
    elif light_down:
        lower = lo - RANGE_MARGIN * span
    if integral:
        upper = None if upper is None else math.ceil(upper)
        lower = None if lower is None else math.floor(lower)
    else:
        upper = None if upper is None else _round_out(upper, "up")
        lower = None if lower is None else _round_out(lower, "down")
    note = f"observed {_fmt(lo)}..{_fmt(hi)}"
    if upper is None or (lower is None and lo < 0):
        note += "; long tail: no bound written on that side (the drift gate watches it)"
    else:
        note += f"; allowed {RANGE_MARGIN:g} span beyond"
    return lower, upper, note


def _light(tail: float, body: float) -> bool:
    """A tail no longer than LIGHT_TAIL bodies: its extreme says something about the next."""
    if body <= 0:
        return tail <= 0
    return tail / body <= LIGHT_TAIL


def _null_limit(s: pd.Series) -> float:
    f = float(s.isna().mean())
    if f == 0:
        return 0.0
    se = math.sqrt(f * (1 - f) / len(s))
    return min(1.0, math.ceil((f + NULL_MARGIN_SIGMAS * se + 0.01) * 100) / 100)


def _round_out(x: float, way: str) -> float:
    if x == 0:
        return 0.0
    digits = 3 - int(math.floor(math.log10(abs(x))))
    scale = 10.0**digits
    return (math.floor if way == "down" else math.ceil)(x * scale) / scale


def _fmt(x: float) -> str:
    return f"{x:g}"


def _int_or_string(s: pd.Series) -> str:
    return "int" if pd.api.types.is_integer_dtype(s.dtype) else "string"


def _event_time_column(df: pd.DataFrame, label: str) -> str | None:
    for col in df.columns:
        s = df[col]
        if col == label or not TIME_HINT.search(str(col)) or s.isna().any():
            continue
        in_range = UNIX_RANGE[0] <= s.min() and s.max() <= UNIX_RANGE[1]
        if pd.api.types.is_integer_dtype(s.dtype) and in_range:
            return col
    return None


def _key_column(df: pd.DataFrame, label: str, time_col: str | None) -> str | None:
    for col in df.columns:
        s = df[col]
        if col in (label, time_col) or not KEY_HINT.search(str(col)):
            continue
        if not (pd.api.types.is_integer_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)
                or s.dtype == object):
            continue
        if s.notna().all() and s.is_unique:
            return col
    return None


def _entity(d: Draft, key_col: str | None) -> None:
    if key_col is not None:
        d.entity = {"name": "row", "key": key_col, "derive": "column"}
    else:
        d.entity = {"name": "row", "key": "row_id", "derive": "row_number"}
        d.notes.append("no unique id column: each row is keyed by batch and row number")


def _timing(d: Draft, df: pd.DataFrame, time_col: str | None) -> None:
    if time_col is None:
        d.event_time = {}
        d.split = {"strategy": "random", "test_fraction": TEST_FRACTION}
        d.selection = {"metric": "auc", "slice": "overall"}
        d.notes.append("no event-time column (unix seconds): a stratified random hold-out")
        return
    t = df[time_col]
    months = (int(t.max()) - int(t.min())) / (30.44 * 86400)
    d.event_time = {"column": time_col}
    if months < 5:
        d.split = {"strategy": "random", "test_fraction": TEST_FRACTION}
        d.selection = {"metric": "auc", "slice": "overall"}
        d.notes.append(f"{time_col} spans {months:.1f} months: too short for a time split")
        return
    recent = max(1, round(months * 0.2))
    d.recent_period = {"months": recent}
    d.split = {"strategy": "time"}
    d.selection = {"metric": "auc", "slice": "recent"}
    d.notes.append(f"{time_col} spans {months:.0f} months: the last {recent} are held out")


def _slices(d: Draft, df: pd.DataFrame, label: str) -> None:
    test_rows = len(df) * TEST_FRACTION
    for c in d.columns:
        e = c.entry
        if e.get("role", "feature") != "feature":
            continue
        col = df[e["name"]]
        if PROTECTED_HINTS.search(str(e["name"])):
            d.protected_hints.append(e["name"])
        if e["type"] == "category" and 2 <= len(e["categories"]) <= 10 and len(d.segments) < 3:
            small = col.astype(str).value_counts().min()
            if small * TEST_FRACTION >= MIN_EDGE_ROWS:
                d.segments.append(e["name"])
    for c in d.columns:
        e = c.entry
        if len(d.edge_cases) >= 3:
            break
        if e.get("role", "feature") != "feature" or e["type"] not in ("int", "float"):
            continue
        x = pd.to_numeric(df[e["name"]], errors="coerce").astype(float)
        q = quote_name(e["name"])
        zeros = float((x == 0).mean())
        if 0.01 <= zeros <= 0.5 and zeros * test_rows >= MIN_EDGE_ROWS:
            d.edge_cases.append({"name": f"{_slug(e['name'])}_zero", "where": f"{q} == 0"})
            continue
        top = float(x.quantile(0.95))
        share = float((x > top).mean())
        if share * test_rows >= MIN_EDGE_ROWS and len(d.edge_cases) < 1:
            d.edge_cases.append({"name": f"{_slug(e['name'])}_top_5pct",
                                 "where": f"{q} > {_fmt(_round_out(top, 'down'))}"})


def _slug(name: str) -> str:
    s = re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()
    return s if s and not s[0].isdigit() else f"c_{s}"


def _flow(obj) -> str:
    text = yaml.safe_dump(obj, default_flow_style=True, sort_keys=False, width=10_000)
    return text.removesuffix("\n").removesuffix("\n...").strip()  # a scalar ends its document


def render(d: Draft) -> str:
    """The draft as commented YAML: what was inferred, and what to review."""
    out = [
        f"# {d.name}: drafted by `mlplatform init` from {d.source} ({d.rows} rows).",
        "# Every constraint below is what that file showed, widened by a stated margin: review",
        "# it, tighten what you know better, and keep this file in version control.",
        f"name: {d.name}",
        f"description: {_flow('Predict ' + d.label['column'] + ' (drafted; say what for).')}",
        "intended_use: ''   # review: who uses the score, for what decision",
        "limitations: ''    # review: where the data does not reach",
        "source:",
        f"  path: {_flow(d.source)}",
        f"  format: {d.fmt}",
        f"label: {_flow(d.label if d.label.get('positive') else d.label['column'])}",
        f"event_time: {_flow(d.event_time)}",
        f"entity: {_flow(d.entity)}",
    ]
    out += [f"# {n}" for n in d.notes]
    out.append("columns:")
    for c in d.columns:
        note = f"   # {c.note}" if c.note else ""
        out.append(f"  - {_flow(c.entry)}{note}")
    out.append("slices:")
    out.append(f"  segments: {_flow(d.segments)}")
    if d.recent_period:
        out.append(f"  recent_period: {_flow(d.recent_period)}")
    if d.edge_cases:
        out.append("  edge_cases:   # chosen to hold enough held-out rows; add your own")
        out += [f"    - {_flow(e)}" for e in d.edge_cases]
    else:
        out.append("  edge_cases: []   # none frequent enough in this data; add your own")
    if d.protected_hints:
        out.append(f"  # review: {', '.join(d.protected_hints)} may be protected attributes. "
                   "Listing them gates every")
        out.append("  # version on error-rate gaps between their groups (section `fairness`):")
        out.append(f"  # protected: {_flow(d.protected_hints)}")
    out.append("  protected: []")
    dup = d.duplicate_fraction
    limit = 0.01 if dup == 0 else min(1.0, math.ceil((dup + 0.01) * 100) / 100)
    out += [
        "validation:",
        f"  max_duplicate_fraction: {limit}   # {dup:.2%} repeated rows in the file",
        "constraints:",
        "  latency_p99_ms: 10   # review: the single-row p99 budget of your serving path",
        "kpi:   # review: the business measure; positive_recall is a placeholder",
        f"  name: {_slug(str(d.label.get('positive') or d.label['column']))}_found",
        "  description: Share of positive cases flagged at the threshold.",
        "  kind: positive_recall",
        f"split: {_flow(d.split)}",
        f"selection: {_flow(d.selection)}",
    ]
    return "\n".join(out) + "\n"
