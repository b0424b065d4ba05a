"""Reading YAML from files and ``--set`` values safely.

``yaml.safe_load`` alone accepts a billion-laughs alias bomb (a few hundred bytes that expand
to billions of nodes once anything walks the data), nests until the interpreter's stack gives
out, and lets a duplicated key silently overwrite the first one. ``load_text`` /
``load_file`` bound all three and raise ``YamlError`` with one line naming the source:

- the file must be UTF-8 text of at most ``MAX_BYTES``;
- at most ``MAX_ALIASES`` aliases, and the data they expand to at most ``MAX_NODES`` nodes;
- at most ``MAX_DEPTH`` levels of nesting;
- a key may appear once per mapping;
- only the plain YAML types (SafeLoader): no ``!!python/...`` tags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

MAX_BYTES = 4 * 1024 * 1024
MAX_ALIASES = 200
MAX_NODES = 1_000_000
MAX_DEPTH = 64


class YamlError(ValueError):
    """YAML that cannot be read; the message is one line naming the source."""


class _Loader(yaml.SafeLoader):
    def __init__(self, stream):
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlError(f"more than {MAX_ALIASES} YAML aliases (*name); refusing a possible alias bomb")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlError(f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if isinstance(key_node, ScalarNode):
                    key = key_node.value
                    if key in seen and key != "<<":
                        line = key_node.start_mark.line + 1
                        raise YamlError(f"line {line}: duplicate key {key!r}")
                    seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _expanded_size(root) -> int:
    """Nodes of the tree once every alias is expanded (memoised per node, stops at MAX_NODES)."""
    memo: dict[int, int] = {}

    def size(node) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = 1  # cycles (recursive anchors) count once
        if isinstance(node, SequenceNode):
            n = 1 + sum(size(c) for c in node.value)
        elif isinstance(node, MappingNode):
            n = 1 + sum(size(k) + size(v) for k, v in node.value)
        else:
            n = 1
        n = min(n, MAX_NODES + 1)
        memo[key] = n
        return n

    return size(root)


def load_text(text: str, source: str) -> Any:
    """Parse one YAML document from ``text``; ``YamlError`` names ``source``."""
    if len(text) > MAX_BYTES:
        raise YamlError(f"{source}: larger than {MAX_BYTES // (1024 * 1024)} MB; not a scenario file")
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node) > MAX_NODES:
            raise YamlError(f"expands to more than {MAX_NODES:,} nodes through aliases; refusing a possible alias bomb")
        return loader.construct_document(node)
    except YamlError as exc:
        raise YamlError(f"{source}: not a valid scenario YAML: {exc}") from None
    except yaml.YAMLError as exc:
        raise YamlError(f"{source}: not valid YAML: {_one_line(exc)}") from None
    except RecursionError:
        raise YamlError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        loader.dispose()


def load_file(path: str | Path) -> Any:
    """Read and parse a YAML file (UTF-8, bounded size); ``YamlError`` names the file."""
    path = Path(path)
    if path.is_dir():
        raise YamlError(f"{path}: is a folder, not a YAML file")
    if not path.exists():
        raise YamlError(f"{path}: file not found")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise YamlError(f"{path}: {size:,} bytes, larger than {MAX_BYTES // (1024 * 1024)} MB; not a scenario file")
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if b"\x00" in raw:
        raise YamlError(f"{path}: a binary file, not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    return load_text(text, str(path))


def load_value(text: str, source: str) -> Any:
    """A ``--set`` value: one plain YAML scalar, list or mapping; no tags, no aliases."""
    if "!" in text and any(t in text for t in ("!!", "!<")) or text.lstrip().startswith("!"):
        raise YamlError(f"{source}: tagged YAML values (!tag) are not allowed")
    if "&" in text or "*" in text:
        # anchors/aliases make no sense in one value; reject rather than expand
        try:
            probe = yaml.safe_load(text)
        except yaml.YAMLError:
            probe = None
        if not isinstance(probe, str):
            raise YamlError(f"{source}: YAML anchors and aliases (&, *) are not allowed in a value")
    return load_text(text, source)


def _one_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    text = f"{where}{problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())
