"""Scheduling on Kubeflow Pipelines: its cron dialect is checked before the API is called."""

import pytest

from mlplatform.cluster.submit import check_cron


def test_kfp_cron_has_six_fields_and_a_unix_cron_is_named():
    assert check_cron("0 0 * * * *") == "0 0 * * * *"
    with pytest.raises(ValueError, match="'0 0 \\* \\* \\* \\*'"):
        check_cron("0 * * * *")
    with pytest.raises(ValueError, match="6 fields"):
        check_cron("hourly")
