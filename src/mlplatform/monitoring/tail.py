"""Reading append-only JSON-lines logs from where the last reader stopped.

A scheduled monitoring run must see every logged row exactly once, whatever the writers' clocks
say: several server workers and the payload logger append to one folder, so a row logged later
may carry an earlier time. A checkpoint by time would lose it or count it twice; a checkpoint
by position cannot. A position is (file name, bytes consumed); files are append-only and never
renamed (mlplatform.monitoring.requestlog), so a line once read is never read again, and a line
still being written (no newline yet) is left for the next reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlplatform.monitoring.requestlog import log_files


@dataclass(frozen=True)
class Tail:
    """What a read returned and where the next one starts."""

    records: list  # dicts, or what `per_file` made of each file's dicts
    offsets: dict[str, int]  # file name -> bytes consumed (complete lines only)
    unreadable: int = 0  # complete lines that were not JSON objects (skipped, counted)
    rotated_away: list[str] = field(default_factory=list)  # files deleted before being read out


def _complete_lines(path: Path, start: int) -> tuple[list[bytes], int]:
    """The complete lines after byte `start` and the offset after the last of them."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read()
    end = data.rfind(b"\n")
    if end < 0:
        return [], start
    return data[: end + 1].splitlines(), start + end + 1


def _parse(lines: Iterable[bytes]) -> tuple[list[dict], int]:
    out, bad = [], 0
    for line in lines:
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(item, dict):
            out.append(item)
        else:
            bad += 1
    return out, bad


def read_new_lines(path: Path, offset: int) -> tuple[list[dict], int, int]:
    """(records, new offset, unreadable lines) of one file after `offset`. A file shorter than
    the offset was replaced, not appended to: it is read from the start."""
    path = Path(path)
    if not path.exists():
        return [], 0, 0
    if path.stat().st_size < offset:
        offset = 0
    lines, end = _complete_lines(path, offset)
    records, bad = _parse(lines)
    return records, end, bad


def read_new_records(
    directory: Path, offsets: dict[str, int], per_file: Callable[[list[dict]], Any] | None = None
) -> Tail:
    """Every request-log row appended since `offsets`, oldest file first. With `per_file`, each
    file's new rows go to it as soon as they are parsed and `records` holds what it returned,
    one item per file with new rows: a backlog of a million rows is never one list of dicts."""
    records: list = []
    new_offsets: dict[str, int] = {}
    bad = 0
    present = log_files(Path(directory)) if Path(directory).is_dir() else []
    for path in present:
        got, end, unreadable = read_new_lines(path, offsets.get(path.name, 0))
        if per_file is None:
            records.extend(got)
        elif got:
            records.append(per_file(got))
        new_offsets[path.name] = end
        bad += unreadable
    names = {p.name for p in present}
    # A file in the checkpoint but gone from disk was deleted by rotation (the log is bounded):
    # reported, because rows appended to it after the last read were never seen.
    gone = sorted(n for n in offsets if n not in names)
    return Tail(records, new_offsets, bad, gone)
