"""The served-request log: a sampled, size-bounded, rotating JSON-lines record of predictions.

The model server appends one line per scored row (request id, row, model, version, event time,
features as received, probability, prediction); drift and delayed-label performance read it back.
Writes are buffered and flushed every `flush_rows` rows or `flush_s` seconds, so a request pays
for a dict and a list append, not for a file write. Storage is bounded: a file holds at most
`max_file_rows` rows and only the newest `max_files` files are kept.

Stdlib only on the writing side: it runs inside the serving environment.
"""

from __future__ import annotations

import json
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

PREFIX = "requests-"
SUFFIX = ".jsonl"
ENV_DIR = "MLPLATFORM_REQUEST_LOG_DIR"
ENV_SAMPLE = "MLPLATFORM_REQUEST_LOG_SAMPLE"


@dataclass(frozen=True)
class RequestLogConfig:
    """Where and how much to log; `from_env` reads MLPLATFORM_REQUEST_LOG_DIR / _SAMPLE."""

    directory: Path
    sample_rate: float = 1.0  # share of requests logged (all rows of a logged request)
    max_file_rows: int = 50_000
    max_files: int = 20  # bound: max_files * max_file_rows rows on disk
    flush_rows: int = 256
    flush_s: float = 2.0

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"request log sample_rate {self.sample_rate}: must be in (0, 1]")
        if min(self.max_file_rows, self.max_files, self.flush_rows) < 1:
            raise ValueError("request log max_file_rows, max_files and flush_rows must be >= 1")

    @classmethod
    def from_env(cls, directory: str | None = None, sample: str | None = None):
        """The config from explicit values, else the environment; None when logging is off."""
        directory = directory or os.environ.get(ENV_DIR)
        if not directory:
            return None
        raw = sample if sample is not None else os.environ.get(ENV_SAMPLE, "1.0")
        try:
            rate = float(raw)
        except ValueError as exc:
            raise ValueError(f"{ENV_SAMPLE}={raw!r}: expected a number in (0, 1]") from exc
        return cls(Path(directory), sample_rate=rate)


def _clean(v):
    # JSON has no NaN: a missing value is null, as in the request.
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


class RequestLog:
    """Appends scored rows to the log; thread-safe; call `close` at shutdown."""

    def __init__(self, config: RequestLogConfig, seed: int | None = None) -> None:
        self.config = config
        self.dir = Path(config.directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._buffer: list[str] = []
        self._last_flush = time.monotonic()
        self._file: Path | None = None
        self._file_rows = 0
        self._seq = 0
        self.rows_logged = 0
        self._flusher: threading.Thread | None = None  # started by the first record
        self._closed = threading.Event()

    def sampled(self) -> bool:
        return self.config.sample_rate >= 1.0 or self._rng.random() < self.config.sample_rate

    def record(
        self,
        request_id: str | None,
        model: str,
        version: str,
        rows: Sequence[dict],
        probabilities: Iterable[float],
        predictions: Iterable[int],
        ts: float | None = None,
        sampled: bool = False,
    ) -> str | None:
        """Log one request's rows if sampled (`sampled=True`: the caller already drew);
        returns the request id used, None when the request was not sampled."""
        if not sampled and not self.sampled():
            return None
        rid = request_id or uuid.uuid4().hex
        ts = time.time() if ts is None else ts
        lines = [
            json.dumps(
                {
                    "request_id": rid,
                    "row": i,
                    "ts": ts,
                    "model": model,
                    "version": version,
                    "features": {k: _clean(v) for k, v in row.items()},
                    "probability": float(p),
                    "prediction": int(c),
                },
                separators=(",", ":"),
            )
            for i, (row, p, c) in enumerate(zip(rows, probabilities, predictions, strict=True))
        ]
        with self._lock:
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_periodically, daemon=True)
                self._flusher.start()
            self._buffer.extend(lines)
            if (
                len(self._buffer) >= self.config.flush_rows
                or time.monotonic() - self._last_flush >= self.config.flush_s
            ):
                self._flush_locked()
        return rid

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def close(self) -> None:
        self._closed.set()
        self.flush()

    def _flush_periodically(self) -> None:
        # A quiet server still gets its last rows on disk within flush_s, for readers.
        while not self._closed.wait(self.config.flush_s):
            self.flush()

    def _flush_locked(self) -> None:
        self._last_flush = time.monotonic()
        while self._buffer:
            if self._file is None or self._file_rows >= self.config.max_file_rows:
                self._rotate()
            room = self.config.max_file_rows - self._file_rows
            chunk, self._buffer = self._buffer[:room], self._buffer[room:]
            with open(self._file, "a") as fh:
                fh.write("\n".join(chunk) + "\n")
            self._file_rows += len(chunk)
            self.rows_logged += len(chunk)

    def _rotate(self) -> None:
        self._seq += 1
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        # pid + sequence: two servers may share one directory without writing the same file.
        self._file = self.dir / f"{PREFIX}{stamp}-{os.getpid()}-{self._seq:06d}{SUFFIX}"
        self._file_rows = 0
        files = log_files(self.dir)
        for old in files[: max(0, len(files) - self.config.max_files + 1)]:
            old.unlink(missing_ok=True)


def record_each_row(
    log: RequestLog,
    model: str,
    version: str,
    rows: Sequence[dict],
    probabilities: Sequence[float],
    predictions: Sequence[int],
    request_ids: Sequence[str],
    ts: Sequence[float],
) -> int:
    """Log every row as its own request (one trip, one call, as clients send them), scored
    outside a server (a batch, a replay, a notebook); all rows are kept. Returns the count."""
    n = len(rows)
    if not n == len(probabilities) == len(predictions) == len(request_ids) == len(ts):
        raise ValueError("rows, probabilities, predictions, request_ids and ts differ in length")
    for i in range(n):
        log.record(
            str(request_ids[i]),
            model,
            version,
            rows[i : i + 1],
            probabilities[i : i + 1],
            predictions[i : i + 1],
            ts=float(ts[i]),
            sampled=True,
        )
    return n


def log_files(directory: Path) -> list[Path]:
    """The log's files, oldest first (names sort by creation time)."""
    return sorted(Path(directory).glob(f"{PREFIX}*{SUFFIX}"), key=lambda p: (p.stat().st_mtime, p))


def iter_records(directory: Path) -> Iterable[dict]:
    """Every logged row, oldest file first; a torn last line (a crash mid-write) is skipped."""
    for path in log_files(directory):
        with open(path) as fh:
            for line in fh:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
