"""Change one top-level value of a spec the user wrote, and nothing else of the file.

The edit is made on the YAML parser's own node positions: the new value replaces exactly the
old value's characters (or one entry is added after the last), so quoted keys, flow or block
style, comments, indentation, `---`, CRLF line ends and every other byte stay as written. The
result is loaded again with the strict loader and must equal the old mapping with that one
key set, so an edit can only ever write the spec that was meant (or refuse).

A full re-dump (PyYAML, or ruamel.yaml's round-trip mode) was measured to reformat what the
user wrote: ruamel re-indented 4-space mappings to 2, folded a multi-line flow mapping onto
one line, re-indented block sequences, and dropped `---`/`...` and CRLF. The positions come
from the same PyYAML the validator (core.yamldoc) uses, so the editor reads exactly the files
the validator reads, with no second YAML library to disagree with it.
"""
from __future__ import annotations

import yaml

from daemon.core.yamldoc import YamlDocError, load_mapping


class SpecEditError(ValueError):
    """The edit could not be made without changing more than the one value."""


def _scalar(value: int) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"only integers are written into a spec, not {type(value).__name__}")
    return str(value)


def set_top_level(text: str, key: str, value: int) -> str:
    """`text` with the top-level `key` set to `value`, added after the last entry if absent.

    Raises YamlDocError when `text` is not a spec mapping the strict loader reads (with its
    line:col), SpecEditError if the edit would change anything but that one value."""
    before = load_mapping(text.encode("utf-8")).value   # limits first: depth, size, tags, duplicates
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise YamlDocError(1, 1, "the top level is not a mapping")
    rendered = _scalar(value)
    found = [v for k, v in root.value if isinstance(k, yaml.ScalarNode) and k.value == key]
    if found:
        node = found[0]
        edited = text[:node.start_mark.index] + rendered + text[node.end_mark.index:]
    else:
        edited = _insert(text, root, f"{key}: {rendered}")
    after = load_mapping(edited.encode("utf-8")).value
    if after != {**before, key: value}:
        raise SpecEditError(f"could not set {key} without changing the rest of the file; "
                            f"set `{key}: {rendered}` in the file by hand")
    return edited


def _insert(text: str, root: yaml.MappingNode, entry: str) -> str:
    """Add `entry` as the mapping's last item, in the mapping's own style."""
    if root.flow_style:
        if not root.value:   # `{}`: the entry goes between the braces
            close = text.rindex("}", 0, root.end_mark.index)
            return text[:close] + entry + text[close:]
        end = root.value[-1][1].end_mark.index
        return text[:end] + ", " + entry + text[end:]
    newline = "\r\n" if "\r\n" in text else "\n"
    indent = " " * root.value[0][0].start_mark.column
    end = root.value[-1][1].end_mark
    if end.column == 0:      # a nested block ends at the start of the next line
        at = end.index
    else:                    # after the rest of the last value's line (its comment, if any)
        line_end = text.find("\n", end.index)
        at = len(text) if line_end < 0 else line_end + 1
    lead = "" if at == 0 or text[at - 1] == "\n" else newline
    return text[:at] + lead + indent + entry + newline + text[at:]


__all__ = ["SpecEditError", "set_top_level"]
