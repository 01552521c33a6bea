"""A batch's validation as one HTML page: the verdict and anomalies table, then TFDV's own
statistics view (Facets Overview) of the batch. The KFP UI shows it as the validate-data
step's HTML artifact; it is also a file a person can open."""

from __future__ import annotations

import html
from pathlib import Path

from mlplatform.validation.report import ValidationReport
from mlplatform.validation.statistics import read_statistics


def batch_view_html(report: ValidationReport | None, statistics: Path | None, title: str) -> str:
    """The verdict, every anomaly (feature, kind, description) and warning, and the batch's
    TFDV statistics when they were kept (`statistics`: a `statistics.pb`)."""
    parts = [f"<h2>{html.escape(title)}</h2>"]
    if report is None:
        parts.append("<p>Accepted earlier: no anomaly report was kept for this batch.</p>")
    else:
        verdict = "accepted" if report.ok else "quarantined"
        parts.append(f"<p><b>{verdict}</b>: {len(report.anomalies)} anomalies.</p>")
        rows = [*((a, "anomaly") for a in report.anomalies),
                *((w, "warning") for w in report.warnings)]
        if rows:
            parts.append(
                "<table border='1' cellpadding='4'><tr><th></th><th>feature</th><th>kind</th>"
                "<th>description</th></tr>"
            )
            for item, what in rows:
                parts.append(
                    f"<tr><td>{what}</td><td>{html.escape(item.feature or '(batch)')}</td>"
                    f"<td>{html.escape(item.kind)}</td>"
                    f"<td>{html.escape(item.description)}</td></tr>"
                )
            parts.append("</table>")
    if statistics is not None and statistics.exists():
        from tensorflow_data_validation.utils.display_util import get_statistics_html

        parts.append("<h3>TFDV statistics</h3>")
        parts.append(get_statistics_html(read_statistics(statistics)))
    else:
        parts.append("<p>No statistics were kept for this batch.</p>")
    return "<html><body>" + "\n".join(parts) + "</body></html>"
