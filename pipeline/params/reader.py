"""params.yaml to a mapping: PyYAML's safe loader, with two rules of its own, and one line
for each way the file can be unreadable (naming the file, the key or line, and the fix)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from nanomoe.config import display_path
from pipeline.stage import ParamsError


class ParamsLoader(yaml.SafeLoader):
    """YAML for params.yaml: PyYAML's safe loader, plus ``1e-3``, ``5E-4``, ``-1e-5`` read as
    floats. YAML 1.1 (PyYAML) wants a dot in a float and reads those as strings; YAML 1.2
    (DVC's reader) and every user read them as numbers. Strings that are not numbers stay
    strings, so a typo in a float field is still an error naming the key."""


ParamsLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def refuse_duplicates(node: yaml.Node, shown: str, path: tuple[str, ...] = ()) -> None:
    """A key written twice in one mapping, refused with both its lines: PyYAML keeps the last
    one silently, so an edit to the first would change nothing."""
    if isinstance(node, yaml.MappingNode):
        lines: dict[str, int] = {}
        for key, value in node.value:
            name, line = ".".join((*path, str(key.value))), key.start_mark.line + 1
            if key.value in lines:
                raise ParamsError(
                    f"{shown}: {name}: written twice, at lines {lines[key.value]} and {line} "
                    "(the second silently wins); keep one"
                )
            lines[key.value] = line
            refuse_duplicates(value, shown, (*path, str(key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            refuse_duplicates(item, shown, path)


def read_yaml(path: Path, sections: tuple[str, ...]) -> dict:
    """The mapping in ``path``; an unreadable file raises a ParamsError in one line."""
    shown = display_path(path)
    try:
        loader = ParamsLoader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is not None:
                refuse_duplicates(node, shown)
            raw = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise ParamsError(f"{shown}: not found; run from the project root") from None
    except UnicodeDecodeError:
        raise ParamsError(f"{shown}: not UTF-8 text; save it as UTF-8") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ParamsError(
            f"{shown}: not valid YAML{where} ({err.__class__.__name__}); fix that line"
        ) from None
    if not isinstance(raw, dict):
        raise ParamsError(
            f"{shown}: must be a mapping of sections ({', '.join(sections)}), "
            f"got {type(raw).__name__}; see the shipped params.yaml"
        )
    return raw
