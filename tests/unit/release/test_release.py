"""Release files: the canary policy in YAML, with errors that name the key at fault."""

from __future__ import annotations

import pytest

from mlplatform.release.canary import CanaryPolicy
from mlplatform.release.files import DEFAULT_RELEASE, ReleaseError, load_policy
from mlplatform.workspace import REPO_ROOT


def test_shipped_release_files_load():
    default = load_policy()
    assert default.challenger_percent == 5 and default.max_p99_ratio == pytest.approx(1.10)
    assert DEFAULT_RELEASE.exists()
    demo = load_policy(REPO_ROOT / "releases" / "demo.yaml")
    assert demo.challenger_percent == 5


def test_overrides_win_and_none_is_ignored(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("canary:\n  challenger_percent: 10\n  interval_s: 3\n")
    p = load_policy(f, challenger_percent=20, mode=None)
    assert p.challenger_percent == 20 and p.interval_s == 3.0 and p.mode == "split"
    assert isinstance(p.interval_s, float)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("canary:\n  challenger_percnt: 5\n", "unknown canary setting 'challenger_percnt'"),
        ("canary:\n  challenger_percent: five\n", "'challenger_percent' must be of type int"),
        ("canary:\n  iterations: true\n", "'iterations' must be of type int"),
        ("canary:\n  challenger_percent: 0\n", "challenger_percent must be within 1..100"),
        ("canary:\n  mode: champion-only\n", "mode 'champion-only'"),
        ("canary: [1, 2]\n", "expected a mapping under 'canary:'"),
        ("canary:\n  interval_s: [\n", "not valid YAML"),
    ],
)
def test_bad_release_files_name_the_problem(tmp_path, text, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(ReleaseError, match="bad.yaml") as err:
        load_policy(f)
    assert needle in str(err.value)


def test_missing_release_file(tmp_path):
    with pytest.raises(ReleaseError, match="cannot read release file"):
        load_policy(tmp_path / "nope.yaml")


def test_every_policy_field_is_documented_in_the_default_release():
    text = DEFAULT_RELEASE.read_text()
    missing = [f for f in CanaryPolicy.__dataclass_fields__ if f"  {f}:" not in text]
    assert not missing, f"releases/canary.yaml does not document {missing}"
