"""Build the kustomize overlays (kubectl kustomize, offline) and apply them."""

from __future__ import annotations

from pathlib import Path

from mlplatform.cluster import images
from mlplatform.cluster.tools import require, run

# The image names the manifests pin; replaced by the configured ones (one setting each).
_IMAGE_DEFAULTS = {
    images.DEFAULT_COMPONENT_IMAGE: images.component_image,
    images.DEFAULT_SERVING_IMAGE: images.serving_image,
}


def build(kustomization: Path) -> list[dict]:
    """The objects of one kustomization, with the configured image names."""
    import yaml

    require("kubectl")
    out = run(["kubectl", "kustomize", str(kustomization)])
    objects = [o for o in yaml.safe_load_all(out) if o]
    for obj in objects:
        _set_images(obj)
    return objects


def _set_images(node) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "image" and isinstance(value, str) and value in _IMAGE_DEFAULTS:
                node[key] = _IMAGE_DEFAULTS[value]()
            else:
                _set_images(value)
    elif isinstance(node, list):
        for item in node:
            _set_images(item)


def to_yaml(objects: list[dict]) -> str:
    import yaml

    return yaml.safe_dump_all(objects, sort_keys=False)


def apply_overlay(
    kustomization: Path, *, context: str | None = None, skip_kinds: set[str] = frozenset()
) -> list[dict]:
    """kubectl apply the built overlay (minus `skip_kinds`); returns what was applied."""
    objects = [o for o in build(kustomization) if o.get("kind") not in skip_kinds]
    cmd = ["kubectl", *(["--context", context] if context else []), "apply", "-f", "-"]
    run(cmd, input_text=to_yaml(objects))
    return objects
