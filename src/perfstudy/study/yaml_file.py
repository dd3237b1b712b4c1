"""Study files read safely: YAML's safe loader, plus limits a hostile or mistaken file cannot
get past (size, expanded size through aliases, nesting depth) and no silently dropped
duplicate keys. Every problem is a one-line ``UsageError`` naming the file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from perfstudy.errors import UsageError

MAX_BYTES = 1 << 20  # a study file is a few KB
MAX_NODES = 100_000  # after aliases are expanded (a "billion laughs" file has ~10^9)
MAX_DEPTH = 50


def read(path: str | Path) -> Any:
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path}: is a folder, not a study file")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UsageError(f"{path}: {path.stat().st_size:,} bytes; a study file is at most "
                             f"{MAX_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such study file") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read it ({e.strerror})") from None
    return parse(text, str(path))


def parse(text: str, where: str = "<study>") -> Any:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check(node, where)
        return yaml.SafeLoader(text).get_single_data()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark else ""
        raise UsageError(f"{where}: not valid YAML{at}: {getattr(e, 'problem', e)}") from None
    except RecursionError:
        raise UsageError(f"{where}: nested too deeply to be a study file") from None


def _check(root: yaml.Node, where: str) -> None:
    """Depth, expanded size (aliases counted each time they are used) and duplicate keys,
    on the composed node graph: nothing is expanded to measure it."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_DEPTH:
            raise UsageError(f"{where}: nested more than {MAX_DEPTH} levels deep")
        if id(node) in sizes:
            return sizes[id(node)]
        total = 1
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        raise UsageError(f"{where}: {key.value!r} is given twice (lines "
                                         f"{seen[key.value] + 1} and {key.start_mark.line + 1})")
                    seen[key.value] = key.start_mark.line
                total += size(key, depth + 1) + size(value, depth + 1)
        elif isinstance(node, yaml.SequenceNode):
            total += sum(size(v, depth + 1) for v in node.value)
        if total > MAX_NODES:
            raise UsageError(f"{where}: expands to more than {MAX_NODES:,} values (aliases "
                             "included); a study file is far smaller")
        sizes[id(node)] = total
        return total

    size(root, 0)
