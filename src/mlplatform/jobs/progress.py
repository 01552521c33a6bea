"""Progress of a local pipeline run: one line per task (name, state, elapsed) and its key result
when it ends, read from what the task left in the home (catalogue, feature build, MLflow runs,
reports). kfp.local's own output, the tasks' logs and library warnings go to a log file.

The run's output is parsed as kfp.local prints it ("Executing task 'x'", "Task 'x' finished
with status SUCCESS"); task names are mapped to the pipeline's display names, so the three
training tasks read `train-logistic`, `train-xgboost`, `train-keras`.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mlplatform.spec import UseCase
from mlplatform.workspace import Workspace

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([^']+)'")
_ENDED = re.compile(r"Task '([^']+)' finished with status (\w+)")
SYMBOL = {"waiting": " ", "running": "…", "SUCCESS": "✓", "FAILURE": "✗"}


@dataclass
class TaskLine:
    """One task of the run as the user sees it."""

    name: str
    state: str = "waiting"  # waiting | running | SUCCESS | FAILURE
    started: float | None = None
    ended: float | None = None
    result: str = ""

    def elapsed(self, now: float) -> float:
        if self.started is None:
            return 0.0
        return (self.ended or now) - self.started

    def render(self, now: float) -> str:
        clock = f"{self.elapsed(now):6.1f} s" if self.started is not None else " " * 8
        line = f"  {SYMBOL.get(self.state, '?')} {self.name:<18} {clock}"
        return f"{line}  {self.result}" if self.result else line


class RunProgress:
    """Task lines fed by the run's output; `on_change` is called after each state change."""

    def __init__(
        self,
        display_names: dict[str, str],
        result_of: Callable[[str], str],
        on_change: Callable[[TaskLine], None] = lambda _line: None,
    ) -> None:
        self.display = display_names
        self.result_of = result_of
        self.on_change = on_change
        self.tasks: dict[str, TaskLine] = {}
        self._lock = threading.Lock()

    def feed(self, text: str) -> None:
        """One line (or several) of the run's output."""
        for raw in text.splitlines():
            line = _ANSI.sub("", raw)
            started, ended = _STARTED.search(line), _ENDED.search(line)
            if started:
                task = self._task(started.group(1))
                task.state, task.started = "running", time.monotonic()
                self.on_change(task)
            elif ended:
                task = self._task(ended.group(1))
                task.state, task.ended = ended.group(2), time.monotonic()
                if task.state == "SUCCESS":
                    try:
                        task.result = self.result_of(task.name)
                    except Exception as exc:  # noqa: BLE001 - a summary must not fail the run
                        task.result = f"(result not read: {exc})"[:120]
                self.on_change(task)

    def _task(self, key: str) -> TaskLine:
        with self._lock:
            name = self.display.get(key, key)
            return self.tasks.setdefault(name, TaskLine(name))

    def lines(self) -> list[str]:
        now = time.monotonic()
        return [t.render(now) for t in self.tasks.values()]


class LineSink(io.TextIOBase):
    """A text stream that appends everything to `log` and hands complete lines to `feed`:
    what the run prints goes to its log file while the progress reads it."""

    def __init__(self, log, feed: Callable[[str], None]) -> None:
        self.log, self.feed, self._partial = log, feed, ""

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        self.log.write(s)
        self._partial += s
        if "\n" in self._partial:
            done, self._partial = self._partial.rsplit("\n", 1)
            self.feed(done)
        return len(s)

    def flush(self) -> None:
        self.log.flush()


def training_results(spec: UseCase, home: Path, since: float) -> Callable[[str], str]:
    """The key result of each training-pipeline task, read from the home after it ends."""
    ws = Workspace.locate(home, spec.name)

    def result(task: str) -> str:
        if task == "ingest-data":
            return _newest_batch(ws, spec)
        if task == "validate-data":
            return _newest_batch(ws, spec)
        if task == "build-features":
            s = json.loads((ws.feast / "last_build.json").read_text())
            return (
                f"training set {s.get('training_rows', s['rows']):,} rows, "
                f"label rate {s.get('label_rate', '?')}"
            )
        if task.startswith(("train-", "evaluate-")):
            return _family_result(spec, home, task.split("-", 1)[1], task, since)
        if task == "select-model":
            return _winner(ws)
        if task == "register-model":
            r = json.loads((ws.reports / "registration.json").read_text())
            return (
                f"v{r['version']} ({r['family']}) alias {r['alias'] or 'none'}, battery "
                f"{'passed' if r['battery_passed'] else 'failed'}"
            )
        return ""

    return result


def monitoring_results(spec: UseCase, home: Path, since: float) -> Callable[[str], str]:
    """The key result of each monitoring-pipeline task, read from the home after it ends; a
    retraining stage of a run that retrains nothing says `skipped`."""
    ws = Workspace.locate(home, spec.name)

    def verdict() -> dict:
        windows = sorted((ws.monitoring / "windows").glob("window-*.json"))
        return json.loads(windows[-1].read_text()) if windows else {}

    def result(task: str) -> str:
        v = verdict()
        if task == "watch-traffic":
            drifted = [f for f, d in v.get("drift", {}).items() if d.get("drifted")]
            judged = "" if v.get("judged") else " (kept open)"
            why = f"yes ({', '.join(v.get('reasons', []))})" if v.get("retrain") else "no"
            return (f"{v.get('rows', 0):,} rows{judged}, drifted: {', '.join(drifted) or 'none'}, "
                    f"retrain {why}")
        if not v.get("retrain"):
            return "skipped"
        if task == "retrain-features":
            s = json.loads((ws.feast / "last_build.json").read_text())
            return f"training set {s.get('training_rows', s['rows']):,} rows"
        if task.startswith("retrain-"):
            return _family_result(spec, home, task.split("-", 1)[1], "train-", since) or "skipped"
        if task == "register-retrained":
            r = json.loads((ws.reports / "registration.json").read_text())
            return (f"v{r['version']} alias {r['alias'] or 'none'}, battery "
                    f"{'passed' if r['battery_passed'] else 'failed'}")
        if task == "request-canary":
            from mlplatform.monitoring.triggers import TriggerLog, trigger_log_path

            closed = TriggerLog(trigger_log_path(home, spec.name)).read()
            last = closed[-1] if closed else {}
            asked = last.get("canary") == "requested"
            return f"v{last.get('retrained_version')}: " + (
                "canary requested" if asked else "refused by the gate"
            )
        return ""

    return result


def _newest_batch(ws: Workspace, spec: UseCase) -> str:
    from mlplatform.data.catalogue import Catalogue

    batches = Catalogue(ws.catalogue).list(spec.name)
    if not batches:
        return ""
    b = batches[-1]
    return f"batch {b.short_id}: {b.status.value} ({b.rows:,} rows)"


def _family_result(spec: UseCase, home: Path, family: str, task: str, since: float) -> str:
    from mlflow import MlflowClient

    from mlplatform.tracking import use_workspace

    exp = use_workspace(home, spec.name)
    runs = MlflowClient().search_runs(
        [exp],
        f"tags.family = '{family}' and attributes.start_time >= {int(since * 1000)}",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return ""
    m, t = runs[0].data.metrics, runs[0].data.tags
    if task.startswith("train-"):
        return (
            f"AUC {m.get('auc_overall', float('nan')):.3f}, "
            f"p99 {m.get('serving_single_p99_ms', float('nan')):.2f} ms, "
            f"{m.get('serving_artifact_mb', float('nan')):.1f} MB"
        )
    quality = m.get("selection_quality")
    verdict = t.get("fairness_verdict", "")
    text = f"{spec.selection.metric} {quality:.3f}" if quality is not None else ""
    return f"{text}, fairness {verdict}" if verdict else text


def _winner(ws: Workspace) -> str:
    report = ws.reports / "selection.md"
    if not report.exists():
        return ""
    for line in report.read_text().splitlines():
        if line.startswith(("**Winner", "**No candidate")):
            return line.replace("**", "")[:110]
    return ""
