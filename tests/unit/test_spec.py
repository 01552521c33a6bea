"""The use-case spec: strict, and its errors point at the key and line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mlplatform.spec import Role, SpecError, load_spec, spec_json_schema


def test_shipped_specs_load(taxi, credit):
    assert taxi.label == "big_tipper"
    assert taxi.column("tips").role is Role.EXCLUDED  # the raw tip leaks the label
    assert "tips" not in {c.name for c in taxi.feature_columns}
    assert credit.event_time.column is None  # no event time: ingestion time is used
    assert {"sex", "age_band", "education", "marriage"} <= set(credit.slices.protected)


def _write(tmp_path, text):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_key_and_line(tmp_path, repo_root):
    text = (repo_root / "usecases" / "taxi.yaml").read_text()
    text = text.replace("label: big_tipper", "label: big_tipper\nlabel_colum: oops")
    line = text.splitlines().index("label_colum: oops") + 1
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, text))
    assert "label_colum" in str(err.value)
    assert f"line {line}" in str(err.value)


def test_unknown_column_reference_points_at_line(tmp_path, repo_root):
    text = (repo_root / "usecases" / "taxi.yaml").read_text()
    text = text.replace("segments: [payment_type,", "segments: [payment_typo,")
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "payment_typo" in t)
    with pytest.raises(SpecError) as err:
        load_spec(_write(tmp_path, text))
    msg = str(err.value)
    assert "payment_typo" in msg and "slices.segments.0" in msg and f"line {line}" in msg


def test_wrong_type_names_field(tmp_path, repo_root):
    text = (repo_root / "usecases" / "taxi.yaml").read_text()
    text = text.replace("latency_p99_ms: 10", "latency_p99_ms: fast")
    with pytest.raises(SpecError, match=r"constraints\.latency_p99_ms"):
        load_spec(_write(tmp_path, text))


def test_excluded_column_needs_reason(tmp_path, repo_root):
    text = (repo_root / "usecases" / "taxi.yaml").read_text()
    text = text.replace("    reason: the raw tip defines the label (leakage)\n", "")
    with pytest.raises(SpecError, match="needs a `reason`"):
        load_spec(_write(tmp_path, text))


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(SpecError, match="no such use-case file"):
        load_spec(tmp_path / "nope.yaml")


def test_spec_is_frozen(taxi):
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        taxi.label = "other"


def test_json_schema_forbids_extras():
    schema = spec_json_schema()
    assert schema["additionalProperties"] is False
    assert "columns" in schema["properties"]


def test_cli_prints_schema_quickly():
    out = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "spec", "--schema"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout)["title"] == "UseCase"
    # --help must not import TensorFlow (it would take ~15 s)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from mlplatform.cli import app; print('tensorflow' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


def test_cli_invalid_spec_exits_nonzero(tmp_path):
    p = _write(tmp_path, "name: x\n")
    out = subprocess.run(
        [sys.executable, "-m", "mlplatform.cli", "spec", "--usecase", str(p)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "source" in out.stderr and "Field required" in out.stderr
