"""The gate's distribution checks: drift from the reference (size-aware), content seen before,
and batches too small to judge. Schema checks (types, ranges, domains, presence) are TFDV's."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from mlplatform.data.content import overlap_mask, row_hashes
from mlplatform.data.drift import FeatureDrift, ReferenceProfile, drift_scores, share_table
from mlplatform.spec import UseCase
from mlplatform.validation.report import Anomaly


@dataclass
class DistributionResult:
    anomalies: list[Anomaly] = field(default_factory=list)
    warnings: list[Anomaly] = field(default_factory=list)
    drift: list[FeatureDrift] = field(default_factory=list)
    overlap_fraction: float = 0.0
    hashes: np.ndarray | None = None
    shares: dict[str, pd.DataFrame] = field(default_factory=dict)  # drifted columns


def distribution_checks(
    table: pa.Table,
    spec: UseCase,
    profile: ReferenceProfile | None,
    seen: np.ndarray,
) -> DistributionResult:
    """Drift of every judged column, overlap with accepted content, and the size rule."""
    out = DistributionResult()
    n = table.num_rows
    out.hashes = row_hashes(table, spec)
    repeated = overlap_mask(out.hashes, seen)
    out.overlap_fraction = float(repeated.mean()) if n else 0.0
    limit = spec.validation.max_overlap_fraction
    if out.overlap_fraction > limit:
        a = Anomaly(
            "OVERLAP",
            "",
            f"{out.overlap_fraction:.1%} of rows ({int(repeated.sum()):,} of {n:,}) are already "
            f"in accepted batches (allowed: {limit:.1%}; validation.overlap: "
            f"{spec.validation.overlap}); they never enter a training set twice",
        )
        (out.anomalies if spec.validation.overlap == "quarantine" else out.warnings).append(a)
    if profile is None:
        return out  # the first batch: nothing to compare with (the report says so)
    policy = spec.drift
    if n < policy.min_rows:
        a = Anomaly(
            "TOO_SMALL_FOR_DRIFT",
            "",
            f"too small to judge drift (n={n:,}, minimum drift.min_rows={policy.min_rows:,}); "
            f"drift.too_small: {policy.too_small}",
        )
        (out.anomalies if policy.too_small == "hold" else out.warnings).append(a)
        return out
    out.drift = drift_scores(profile, table, spec.gate_thresholds(), policy.alpha)
    for d in out.drift:
        if d.drifted:
            kind = "LABEL_SHIFT" if d.feature == spec.label else "DRIFT"
            what = f"{d.describe()}; against {profile.origin}"
            out.anomalies.append(Anomaly(kind, d.feature, what))
            out.shares[d.feature] = share_table(profile, table, d.feature)
    return out


SHARES_FILE = "drift_shares.json"
PLOT_FILE = "drift.png"


def write_shares(shares: dict[str, pd.DataFrame], folder: Path) -> None:
    """Reference vs batch shares of each drifted column: JSON, and a PNG of bar pairs."""
    if not shares:
        return
    data = {k: v.to_dict(orient="list") for k, v in shares.items()}
    (folder / SHARES_FILE).write_text(json.dumps(data, indent=1))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(shares), 1, figsize=(9, 3 * len(shares)), squeeze=False)
    for ax, (name, t) in zip(axes[:, 0], shares.items(), strict=True):
        x = np.arange(len(t))
        ax.bar(x - 0.2, t["reference"], width=0.4, label="reference")
        ax.bar(x + 0.2, t["batch"], width=0.4, label="batch")
        ax.set_xticks(x, t["bin"], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{name}: share of rows per bin")
        ax.legend()
    fig.tight_layout()
    fig.savefig(folder / PLOT_FILE, dpi=90)
    plt.close(fig)


def read_shares(folder: Path) -> dict[str, pd.DataFrame]:
    p = folder / SHARES_FILE
    if not p.exists():
        return {}
    return {k: pd.DataFrame(v) for k, v in json.loads(p.read_text()).items()}
