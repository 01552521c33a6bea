"""The Prometheus recording and alert rules in monitoring/prometheus/ pass their unit tests
(`promtool test rules`), and a wrong expectation is caught (the check can fail)."""

from __future__ import annotations

import shutil

import pytest

from mlplatform.monitoring.prometheus import (
    RULES_DIR,
    ScrapeTargets,
    build_config,
    promtool_test,
    rule_files,
)

TESTS_DIR = RULES_DIR.parent / "tests"
pytestmark = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing: apt-get install prometheus"
)


def test_rules_pass_promtool():
    files = sorted(TESTS_DIR.glob("*.yml"))
    assert files, f"no rule tests under {TESTS_DIR}"
    out = promtool_test(files)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_wrong_expectation_fails(tmp_path):
    (tmp_path / "rules").mkdir()
    for f in rule_files():
        shutil.copy(f, tmp_path / "rules" / f.name)
    text = (TESTS_DIR / "serving_test.yml").read_text().replace("value: 0.05\n", "value: 0.5\n")
    (tmp_path / "tests").mkdir()
    broken = tmp_path / "tests" / "serving_test.yml"
    broken.write_text(text)
    out = promtool_test([broken])
    assert out.returncode != 0 and "FAILED" in out.stdout + out.stderr


def test_config_lists_each_job_and_the_rules():
    cfg = build_config(
        ScrapeTargets(model_servers=("127.0.0.1:8080", "127.0.0.1:8081"), router=("h:9",)),
        rule_files(),
        scrape_interval_s=0.5,
    )
    jobs = {j["job_name"]: j["static_configs"][0]["targets"] for j in cfg["scrape_configs"]}
    assert jobs == {"model-servers": ["127.0.0.1:8080", "127.0.0.1:8081"], "router": ["h:9"]}
    assert cfg["global"]["scrape_interval"] == "500ms"
    assert {p.rsplit("/", 1)[-1] for p in cfg["rule_files"]} == {"alerts.yml", "serving.yml"}
    with pytest.raises(ValueError, match="positive"):
        build_config(ScrapeTargets(), scrape_interval_s=0)
