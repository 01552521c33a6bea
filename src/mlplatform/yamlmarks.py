"""YAML loading that remembers the line of every key, so spec errors can point at it."""

from __future__ import annotations

from typing import Any

import yaml
from yaml.error import MarkedYAMLError

__all__ = ["MarkedYAMLError", "line_of", "load_marked"]

Marks = dict[tuple[str | int, ...], int]


def load_marked(text: str) -> tuple[Any, Marks]:
    """Parse YAML safely; return the data and a map from key path to 1-based line."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    if node is None:
        return None, {}
    marks: Marks = {}
    _walk(node, (), marks)
    return yaml.safe_load(text), marks


def _walk(node: yaml.Node, path: tuple[str | int, ...], marks: Marks) -> None:
    marks[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            child = path + (key.value,)
            _walk(value, child, marks)
            marks[child] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), marks)


def line_of(marks: Marks, loc: tuple[str | int, ...]) -> int | None:
    """The line of the deepest known prefix of `loc` (an unknown key points at its parent)."""
    for n in range(len(loc), -1, -1):
        key = tuple(loc[:n])
        if key in marks:
            return marks[key]
    return None
