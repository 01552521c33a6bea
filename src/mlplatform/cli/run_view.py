"""How a pipeline run looks on the terminal: one live line per task on a terminal, one line per
finished task otherwise (CI logs, pipes), everything else in the run's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from mlplatform.jobs.progress import LineSink, RunProgress, TaskLine


@contextlib.contextmanager
def output_to(log_path: Path, feed: Callable[[str], None]) -> Iterator[None]:
    """Inside the block, what the process prints (stdout, stderr, warnings, logging handlers
    that write to either) goes to `log_path`, and every complete line also to `feed`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1, encoding="utf-8") as log:
        sink = LineSink(log, feed)
        streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
        handlers = [
            h
            for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and h.stream in streams
        ]
        previous = [h.setStream(sink) for h in handlers]
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                yield
        finally:
            for handler, stream in zip(handlers, previous, strict=True):
                handler.setStream(stream)
            sink.flush()


@contextlib.contextmanager
def task_lines(
    display_names: dict[str, str], result_of: Callable[[str], str], out: TextIO | None = None
) -> Iterator[RunProgress]:
    """A RunProgress shown on `out` (default: the terminal the command started on)."""
    out = out or sys.stdout
    if not out.isatty():
        def finished(task: TaskLine) -> None:
            if task.state not in ("waiting", "running"):
                print(task.render(time.monotonic()), file=out, flush=True)

        yield RunProgress(display_names, result_of, finished)
        return

    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    progress = RunProgress(display_names, result_of)
    console = Console(file=out)
    with Live(
        get_renderable=lambda: Text("\n".join(progress.lines()) or "  starting ..."),
        console=console,
        refresh_per_second=4,
        redirect_stdout=False,
        redirect_stderr=False,
        transient=False,
    ):
        yield progress


def run_shown(
    pipeline: Callable[[], None],
    display_names: dict[str, str],
    result_of: Callable[[str], str],
    log_path: Path,
    verbose: bool,
) -> None:
    """Run `pipeline`: with `verbose` its output streams as it is; otherwise one line per task
    with its result, and everything it prints goes to `log_path` (named first)."""
    if verbose:
        pipeline()
        return
    print(f"task logs: {log_path}", flush=True)
    with task_lines(display_names, result_of) as progress, output_to(log_path, progress.feed):
        pipeline()


@contextlib.contextmanager
def rows_progress(what: str) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawn as a bar with rate and time left on a
    terminal's stderr; silent when stderr is not a terminal (logs, pipes)."""
    if not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn(f"{what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(what, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total or None)


def log_tail(log_path: Path, lines: int = 25) -> str:
    """The end of a run's log, for the error message of a failed run."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
