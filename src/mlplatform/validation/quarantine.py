"""The gate applied to stored batches: accept, or quarantine whole; and release after a fix.

A quarantined batch keeps its exact bytes next to its anomaly report (JSON and text) under
`<workspace>/quarantine/<batch_id>/`. Nothing is deleted: a release only changes its status
and writes a release record beside it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from mlplatform.alerts import raise_alert
from mlplatform.data.catalogue import USABLE, BatchRecord, BatchStatus, Catalogue, now_iso
from mlplatform.data.content import save_hashes, seen_hashes
from mlplatform.data.ingest import ingest
from mlplatform.data.reading import UnreadableBatch, read_batch
from mlplatform.spec import UseCase
from mlplatform.validation.distribution import write_shares
from mlplatform.validation.reference import reference_profile
from mlplatform.validation.report import Anomaly, ValidationReport
from mlplatform.validation.schema import schema_version
from mlplatform.validation.statistics import write_statistics
from mlplatform.workspace import Workspace

log = logging.getLogger(__name__)

STATS_FILE = "statistics.pb"
REPORT_FILE = "validation.json"  # every judged batch's report, accepted ones included


class BatchRejected(RuntimeError):
    """Raised to stop a pipeline on a quarantined batch; the message says what to do."""

    def __init__(self, report: ValidationReport, quarantine_dir: Path) -> None:
        self.report = report
        self.quarantine_dir = quarantine_dir
        first = report.anomalies[0]
        super().__init__(
            f"batch {report.batch_id[:12]} from {report.source} was quarantined with "
            f"{len(report.anomalies)} anomalies: {report.summary()}\n"
            f"what to do ({first.feature or 'batch'}): {first.advice(report.usecase)}\n"
            f"report: {quarantine_dir / 'anomalies.txt'}; inspect with "
            f"`mlplatform quarantine show {report.batch_id[:12]} --usecase {report.usecase}`"
        )


@dataclass(frozen=True)
class GateOutcome:
    record: BatchRecord
    report: ValidationReport | None  # None when the batch had been judged before
    accepted_rows: int
    quarantined_rows: int

    @property
    def accepted(self) -> bool:
        return self.record.status in USABLE


class Gate:
    """Ingest, validate and route batches of one use case."""

    def __init__(self, spec: UseCase, schema: schema_pb2.Schema, ws: Workspace) -> None:
        self.spec = spec
        self.schema = schema
        self.ws = ws
        self.cat = Catalogue(ws.catalogue)
        self.schema_version = schema_version(schema)

    def process(self, path: Path, derived_from: str | None = None) -> GateOutcome:
        """Ingest one file and judge it. Re-running on the same bytes changes nothing."""
        rec, _ = ingest(path, self.spec, self.ws, self.schema_version, derived_from)
        rec = self._reopen_if_rules_changed(rec)
        if rec.status is not BatchStatus.INGESTED:
            return self._outcome(rec, None)
        return self._judge(rec)

    def judge(self, batch_id: str) -> GateOutcome:
        """Judge an ingested batch by id (a batch judged before keeps its verdict)."""
        rec = self.cat.get(batch_id)
        if rec is None:
            raise KeyError(f"no batch {batch_id!r} in the {self.spec.name} catalogue")
        rec = self._reopen_if_rules_changed(rec)
        if rec.status is not BatchStatus.INGESTED:
            return self._outcome(rec, None)
        return self._judge(rec)

    def _reopen_if_rules_changed(self, rec: BatchRecord) -> BatchRecord:
        """A quarantine decided by a schema or spec that has since changed is judged again:
        the usual fix of a refused first batch is the spec (a label's classes, a range), and
        the re-run must not need the batch deleted by hand. Its old verdict moves beside the
        batch, so the history stays readable."""
        if rec.status is not BatchStatus.QUARANTINED:
            return rec
        spec_hash = self.spec.spec_hash()
        if rec.schema_version == self.schema_version and rec.spec_hash == spec_hash:
            return rec
        qdir = self.ws.quarantine / rec.batch_id
        if qdir.exists():
            stamp = now_iso().replace(":", "").replace("-", "")
            shutil.move(qdir, self.ws.batch_dir(rec.batch_id) / f"superseded_quarantine_{stamp}")
        reason = (
            f"judged again: quarantined under schema {rec.schema_version} / spec {rec.spec_hash}"
            f", the rules are now schema {self.schema_version} / spec {spec_hash}"
        )
        self.cat.reopen(rec.batch_id, self.schema_version, spec_hash, reason)
        log.info("batch %s: %s", rec.short_id, reason)
        return self.cat.get(rec.batch_id)

    def _judge(self, rec: BatchRecord) -> GateOutcome:
        report, stats, dist = self._check(rec)
        (self.ws.batch_dir(rec.batch_id) / REPORT_FILE).write_text(report.to_json())
        if report.ok:
            self._keep(rec, stats, dist)
            note = "no anomalies" + (
                f"; warnings: {'; '.join(w.kind for w in report.warnings)}"
                if report.warnings
                else ""
            )
            self.cat.set_status(rec.batch_id, BatchStatus.ACCEPTED, note)
        else:
            self._quarantine(rec, report, stats)
            if dist is not None:
                write_shares(dist.shares, self.ws.quarantine / rec.batch_id)
        return self._outcome(self.cat.get(rec.batch_id), report)

    def _keep(self, rec: BatchRecord, stats, dist) -> None:
        """What a usable batch leaves beside its bytes: statistics (views) and row
        fingerprints (overlap and training-set de-duplication)."""
        bdir = self.ws.batch_dir(rec.batch_id)
        if stats is not None:
            write_statistics(stats, bdir / STATS_FILE)
        if dist is not None and dist.hashes is not None:
            save_hashes(dist.hashes, bdir)

    def check(
        self, rec: BatchRecord
    ) -> tuple[ValidationReport, statistics_pb2.DatasetFeatureStatisticsList | None]:
        """Judge a stored batch without changing its status: the report and statistics."""
        report, stats, _ = self._check(rec)
        return report, stats

    def _check(self, rec: BatchRecord):
        report = ValidationReport(
            usecase=self.spec.name,
            batch_id=rec.batch_id,
            source=rec.source,
            rows=rec.rows,
            schema_version=self.schema_version,
        )
        try:
            loaded = read_batch(Path(rec.stored_path), self.spec, rec.format)
        except UnreadableBatch as exc:
            report.anomalies.append(Anomaly(exc.kind, "", str(exc)))
            return report, None, None
        from mlplatform.validation.gate import judge_table  # imports TFDV

        profile = reference_profile(self.spec, self.ws, exclude=rec.batch_id)
        seen = seen_hashes(self.spec, self.ws, exclude=rec.batch_id)
        anomalies, dist, stats = judge_table(loaded.table, self.spec, self.schema, profile, seen)
        report.reference = profile.origin if profile is not None else None
        report.anomalies.extend(anomalies)
        report.warnings.extend(dist.warnings)
        report.drift = [asdict(d) for d in dist.drift]
        report.overlap_fraction = round(dist.overlap_fraction, 6)
        return report, stats, dist

    def _quarantine(self, rec: BatchRecord, report: ValidationReport, stats) -> None:
        qdir = self.ws.quarantine / rec.batch_id
        qdir.mkdir(parents=True, exist_ok=True)
        kept = qdir / Path(rec.stored_path).name
        if not kept.exists():
            try:
                os.link(rec.stored_path, kept)  # same bytes, no second copy on disk
            except OSError:
                shutil.copy2(rec.stored_path, kept)
        (qdir / "anomalies.json").write_text(report.to_json())
        (qdir / "anomalies.txt").write_text(report.to_text())
        if stats is not None:
            write_statistics(stats, qdir / STATS_FILE)
        self.cat.set_status(rec.batch_id, BatchStatus.QUARANTINED, report.summary()[:2000])
        raise_alert(
            self.spec.alerts,
            self.ws.root,
            "batch_quarantined",
            f"{self.spec.name}: batch {rec.short_id} ({rec.rows} rows) quarantined: "
            f"{report.summary()[:500]}",
            batch_id=rec.batch_id,
            usecase=self.spec.name,
            anomalies=[a.kind for a in report.anomalies],
            features=sorted({a.feature for a in report.anomalies if a.feature}),
            reference=report.reference,
            drift=[d for d in report.drift if d["score"] > d["threshold"]],
            what_to_do={
                a.feature or "batch": a.advice(self.spec.name) for a in report.anomalies
            },
        )

    def _outcome(self, rec: BatchRecord, report: ValidationReport | None) -> GateOutcome:
        ok = rec.status in USABLE
        return GateOutcome(rec, report, rec.rows if ok else 0, 0 if ok else rec.rows)

    # -- operator actions ---------------------------------------------------------------

    def release(
        self,
        batch_id: str,
        reason: str,
        replacement: Path | None = None,
        force: bool = False,
    ) -> GateOutcome:
        """Release a quarantined batch after a fix.

        - schema/spec fixed: re-validate with the current schema; released only if clean.
        - data fixed: `replacement` is ingested as a new version derived from this one; if it
          passes, the original is marked superseded.
        - `force`: accept as is; the reason and the outstanding anomalies are recorded.
        """
        rec = self.cat.get(batch_id)
        if rec is None:
            raise KeyError(f"no batch {batch_id!r} in the {self.spec.name} catalogue")
        if rec.status is not BatchStatus.QUARANTINED:
            raise ValueError(f"batch {rec.short_id} is {rec.status.value}, not quarantined")
        if not reason.strip():
            raise ValueError("a release needs a --reason (it is kept in the audit record)")
        qdir = self.ws.quarantine / rec.batch_id
        if replacement is not None:
            out = self.process(replacement, derived_from=rec.batch_id)
            if out.accepted:
                self.cat.set_status(
                    rec.batch_id,
                    BatchStatus.SUPERSEDED,
                    f"replaced by {out.record.short_id}: {reason}",
                )
            self._write_release(qdir, rec, reason, "replacement", out.record.batch_id, out)
            return out
        report, stats, dist = self._check(rec)
        if not report.ok and not force:
            raise BatchRejected(report, qdir)
        self._keep(rec, stats, dist)
        self.cat.set_status(rec.batch_id, BatchStatus.RELEASED, reason)
        out = self._outcome(self.cat.get(rec.batch_id), report)
        self._write_release(qdir, rec, reason, "forced" if force else "revalidated", None, out)
        return out

    def _write_release(self, qdir, rec, reason, how, replacement_id, out) -> None:
        record = {
            "at": now_iso(),
            "batch_id": rec.batch_id,
            "how": how,
            "reason": reason,
            "user": os.environ.get("USER", "unknown"),
            "replacement": replacement_id,
            "accepted": out.accepted,
            "outstanding_anomalies": [a.kind for a in out.report.anomalies] if out.report else [],
        }
        with open(qdir / "releases.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    def quarantined(self) -> list[BatchRecord]:
        return self.cat.list(self.spec.name, BatchStatus.QUARANTINED)

    def report_of(self, batch_id: str) -> ValidationReport:
        rec = self.cat.get(batch_id)
        if rec is None:
            raise KeyError(f"no batch {batch_id!r} in the {self.spec.name} catalogue")
        p = self.ws.quarantine / rec.batch_id / "anomalies.json"
        if not p.exists():
            raise KeyError(f"batch {rec.short_id} was never quarantined (status {rec.status})")
        return ValidationReport.from_json(p.read_text())
