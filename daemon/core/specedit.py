"""Change or remove one top-level value of a spec the user wrote, and nothing else of the file.

The edit is made on the YAML parser's own node positions: the new value replaces exactly the
old value's characters (or one entry is added after the last, or one entry's lines are
removed), so quoted keys, flow or block style, comments, indentation, `---`, CRLF line ends
and every other byte stay as written. The result is loaded again with the strict loader and
must equal the old mapping with that one key set (or gone), so an edit can only ever write
the spec that was meant (or refuse).

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


def _scalar(value: int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, int):
        raise TypeError(f"only integers and booleans are written into a spec, not {type(value).__name__}")
    return str(value)


def _root(text: str) -> tuple[dict, yaml.MappingNode]:
    """The mapping as the strict loader reads it (limits first: depth, size, tags, duplicates),
    and its nodes with their positions."""
    before = load_mapping(text.encode("utf-8")).value
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if not isinstance(root, yaml.MappingNode):
        raise YamlDocError(1, 1, "the top level is not a mapping")
    return before, root


def set_top_level(text: str, key: str, value: int | bool) -> str:
    """`text` with the top-level `key` set to `value`, added after the last entry if absent.

    Raises YamlDocError when `text` is not a spec mapping the strict loader reads (with its
    line:col), SpecEditError if the edit would change anything but that one value."""
    before, root = _root(text)
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


def remove_top_level(text: str, key: str) -> str:
    """`text` without the top-level `key` (unchanged if it has none): in a block mapping the
    entry's lines go (a comment on its own line goes with it), in a flow mapping the entry and
    one comma. Raises as set_top_level does."""
    before, root = _root(text)
    at = [i for i, (k, _) in enumerate(root.value) if isinstance(k, yaml.ScalarNode) and k.value == key]
    if not at:
        return text
    i = at[0]
    name, node = root.value[i]
    if root.flow_style:
        if i > 0:             # `, key: value` after the previous entry
            start, end = root.value[i - 1][1].end_mark.index, node.end_mark.index
        elif len(root.value) > 1:   # the first entry: `key: value, ` up to the next key
            start, end = name.start_mark.index, root.value[1][0].start_mark.index
        else:
            start, end = name.start_mark.index, node.end_mark.index
        edited = text[:start] + text[end:]
    else:
        line_start = text.rfind("\n", 0, name.start_mark.index) + 1
        # `? key` starts the entry one column before the key; a BOM before the first key stays.
        start = line_start + 1 if text.startswith("\ufeff", line_start) else line_start
        if node.end_mark.column == 0:     # a nested block ends at the start of the next line
            end = node.end_mark.index
        else:                             # the rest of the value's line, its comment too
            line_end = text.find("\n", node.end_mark.index)
            end = len(text) if line_end < 0 else line_end + 1
        edited = text[:start] + text[end:]
    expected = {k: v for k, v in before.items() if k != key}
    try:
        after = load_mapping(edited.encode("utf-8")).value
    except YamlDocError:
        after = None
    if after != expected:
        raise SpecEditError(f"could not remove {key} without changing the rest of the file; "
                            f"remove the `{key}:` line from the file by hand")
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


__all__ = ["SpecEditError", "set_top_level", "remove_top_level"]
