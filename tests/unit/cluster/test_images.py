"""How the images are built on each engine: the base, the ignore file, the cache mount."""

from __future__ import annotations

from mlplatform.cluster import images


def test_podman_builds_on_the_offline_base_with_host_networking_and_the_uv_cache(monkeypatch):
    monkeypatch.delenv("MLPLATFORM_BASE_IMAGE", raising=False)
    serving = next(i for i in images.images() if "serving" in i.dockerfile)
    cmd = images.build_command(serving, "podman")
    assert cmd[:2] == ["podman", "build"] and cmd[-1] == "."
    assert f"BASE_IMAGE={images.OFFLINE_BASE}" in cmd
    assert cmd[cmd.index("--network") + 1] == "host"
    assert cmd[cmd.index("--ignorefile") + 1] == "images/.dockerignore"
    if images.UV_CACHE.is_dir():
        assert f"{images.UV_CACHE}:/uv-cache" in cmd and "UV_NO_CACHE=0" in cmd


def test_docker_builds_on_the_pinned_tag_and_the_base_can_be_named(monkeypatch):
    monkeypatch.delenv("MLPLATFORM_BASE_IMAGE", raising=False)
    image = images.images()[0]
    cmd = images.build_command(image, "docker")
    assert f"BASE_IMAGE={images.PINNED_BASE}" in cmd and "--network" not in cmd
    monkeypatch.setenv("MLPLATFORM_BASE_IMAGE", "registry.example/python:3.11")
    assert "BASE_IMAGE=registry.example/python:3.11" in images.build_command(image, "podman")
