"""`check_master`: a spark:// master that does not answer is named at once, without a JVM."""

from __future__ import annotations

import socket

import pytest

from mlplatform.spark.cluster import ClusterError, check_master, free_port


def test_a_listening_master_passes_and_other_schemes_are_not_checked() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        check_master(f"spark://127.0.0.1:{port}")
        # A standby list answers when one of its masters does.
        check_master(f"spark://127.0.0.1:{free_port()},127.0.0.1:{port}")
    check_master("local[2]")


def test_a_closed_port_names_the_url_and_make_spark_up() -> None:
    url = f"spark://127.0.0.1:{free_port()}"
    with pytest.raises(ClusterError) as err:
        check_master(url, timeout=1)
    assert f"no Spark master answers at {url}" in str(err.value)
    assert "make spark-up" in str(err.value)


def test_a_url_without_a_port_says_what_it_should_look_like() -> None:
    with pytest.raises(ClusterError, match="expected spark://HOST:PORT"):
        check_master("spark://127.0.0.1")
