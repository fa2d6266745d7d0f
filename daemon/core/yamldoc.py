"""Load one small YAML mapping safely, remembering where every key and value stands.

Specs are tiny, so the loader is strict: one document, a mapping at the top, no anchors
or aliases (which also rules out expansion bombs), no duplicate keys, no custom tags,
UTF-8 only, and a size cap. Every failure is a `Problem` at a 1-based line:col.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Loc = tuple  # a path into the document: ("engine_kwargs", "max_model_len")

# libyaml's parser when present: the full sync of a large tree parses thousands of specs.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

DEFAULT_MAX_BYTES = 64 * 1024
# A spec needs three levels (engine_kwargs: {key: {key: value}}); anything much deeper is an
# attack on the parser's recursion, refused before it can stop a process.
MAX_DEPTH = 16
# C1 control characters (U+0080-U+009F) are invisible in terminals or act on them
# (U+009B is CSI); YAML treats U+0085 as a line break. A spec has no use for any of them.
_C1 = re.compile("[\u0080-\u009f]")
_NEEDS = {"spec": "; a spec needs at least model_id and model_source"}


@dataclass(frozen=True)
class Position:
    line: int
    col: int


@dataclass(frozen=True)
class YamlDoc:
    """A loaded mapping and the positions of its keys and values."""

    value: dict
    value_pos: dict[Loc, Position] = field(default_factory=dict)
    key_pos: dict[Loc, Position] = field(default_factory=dict)

    def position(self, loc: Loc, *, prefer_key: bool = False) -> Position:
        """Where `loc` stands; falls back to its nearest parent, then to 1:1."""
        loc = tuple(loc)
        while loc:
            table = (self.key_pos, self.value_pos) if prefer_key else (self.value_pos, self.key_pos)
            for positions in table:
                if loc in positions:
                    return positions[loc]
            loc = loc[:-1]
        return Position(1, 1)


class YamlDocError(Exception):
    """Raised with the first problem that stops the document from loading at all."""

    def __init__(self, line: int, col: int, message: str):
        self.line, self.col, self.message = line, col, message
        super().__init__(f"{line}:{col}: {message}")


def _pos(mark: yaml.Mark | None) -> Position:
    return Position(mark.line + 1, mark.column + 1) if mark is not None else Position(1, 1)


# The parser notices an unclosed construct only where it ends (often lines later): name where
# it opened and how to close it. Keyed by the parser's `context`, the same in pyyaml and libyaml.
_OPENED_AT = {
    "while parsing a flow sequence": "the '[' at {at} is not closed; add ']'",
    "while parsing a flow mapping": "the '{{' at {at} is not closed; add '}}'",
    "while scanning a quoted scalar": "the quote at {at} is not closed; add the closing quote",
}


def syntax_message(exc: yaml.MarkedYAMLError) -> str:
    """The parser's problem, plus where the construct it was reading opened, when that is elsewhere."""
    message = f"YAML syntax error: {exc.problem or exc.context or 'invalid YAML'}"
    context, opened = exc.context, exc.context_mark
    if not exc.problem or context is None or opened is None or (
            exc.problem_mark is not None and (opened.line, opened.column) == (exc.problem_mark.line, exc.problem_mark.column)):
        return message
    at = _pos(opened)
    at_text = f"{at.line}:{at.col}"
    hint = _OPENED_AT.get(context)
    if hint is None:  # "while parsing a block mapping" -> "in the block mapping that starts at 1:1"
        kind = re.sub(r"^while \w+ an? ", "", context)
        return f"{message} (in the {kind} that starts at {at_text})"
    return f"{message} ({hint.format(at=at_text)})"


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise YamlDocError(line, col, f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8") from None
    text = text[1:] if text.startswith("\ufeff") else text
    bad = _C1.search(text)
    if bad:
        before = text[: bad.start()]
        raise YamlDocError(before.count("\n") + 1, bad.start() - (before.rfind("\n") + 1) + 1,
                           f"control character U+{ord(bad.group()):04X} is not allowed in a spec; remove it")
    return text


_SAFE_TAGS = {
    "tag:yaml.org,2002:str", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
    "tag:yaml.org,2002:seq",
}


class _Builder:
    """Turns a composed node tree into plain Python values, recording positions."""

    def __init__(self) -> None:
        self.value_pos: dict[Loc, Position] = {}
        self.key_pos: dict[Loc, Position] = {}
        self._constructor = yaml.SafeLoader("")  # only its scalar constructors are used

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.value_pos[loc] = _pos(node.start_mark)
        if len(loc) > MAX_DEPTH:
            p = _pos(node.start_mark)
            raise YamlDocError(p.line, p.col, f"nested more than {MAX_DEPTH} levels deep; a spec needs at most 3")
        if node.tag not in _SAFE_TAGS:
            p = _pos(node.start_mark)
            raise YamlDocError(p.line, p.col, f"tag {node.tag!r} is not allowed in a spec; remove it")
        if isinstance(node, yaml.MappingNode):
            out: dict = {}
            for key_node, value_node in node.value:
                kp = _pos(key_node.start_mark)
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    raise YamlDocError(kp.line, kp.col, "keys must be plain strings")
                key = self._constructor.construct_object(key_node)
                if not isinstance(key, str):
                    raise YamlDocError(kp.line, kp.col, f"key {key!r} must be a string; quote it")
                _refuse_escaped_c1(key, kp)
                if key in out:
                    first = self.key_pos[loc + (key,)]
                    raise YamlDocError(kp.line, kp.col, f"duplicate key {key!r} (first at line {first.line}); keep one")
                self.key_pos[loc + (key,)] = kp
                out[key] = self.build(value_node, loc + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, loc + (i,)) for i, item in enumerate(node.value)]
        value = self._constructor.construct_object(node)
        if isinstance(value, float) and not math.isfinite(value):
            p = _pos(node.start_mark)
            raise YamlDocError(p.line, p.col, f"{node.value} is not a finite number; write a number such as 0.5")
        if isinstance(value, str):
            _refuse_escaped_c1(value, _pos(node.start_mark))
        return value


def _refuse_escaped_c1(text: str, where: Position) -> None:
    """The text was checked for C1 characters before parsing; a double-quoted escape ("\\x85",
    "\\u009b") makes one only now, so the same rule is applied to every key and string value."""
    bad = _C1.search(text)
    if bad:
        raise YamlDocError(where.line, where.col, f"control character U+{ord(bad.group()):04X} (written as an escape) "
                           "is not allowed in a spec; remove it")


def load_mapping(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES, what: str = "spec") -> YamlDoc:
    """Parse `data` as exactly one YAML mapping. Raises YamlDocError with a position."""
    if len(data) > max_bytes:
        raise YamlDocError(1, 1, f"file is {len(data)} bytes, over the {max_bytes}-byte limit for a {what}")
    text = _decode(data)
    if not text.strip():
        raise YamlDocError(1, 1, "file is empty" + _NEEDS.get(what, ""))
    try:
        # Events first: aliases are refused before anything could be expanded. Only a text
        # that could hold an anchor, alias or second document needs the extra pass.
        documents = 0
        scan = any(token in text for token in ("&", "*", "---", "...", "!", "[", "{"))
        depth = 0
        for event in yaml.parse(text, Loader=_Loader) if scan else ():
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                p = _pos(event.start_mark)
                raise YamlDocError(p.line, p.col, "anchors and aliases (&, *) are not allowed in a spec; write the value out")
            if isinstance(event, yaml.NodeEvent) and getattr(event, "tag", None) is not None:
                p = _pos(event.start_mark)
                shown = event.tag.replace("tag:yaml.org,2002:", "!!")
                raise YamlDocError(p.line, p.col, f"tag {shown!r} is not allowed in a spec; remove it")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH + 1:
                    p = _pos(event.start_mark)
                    raise YamlDocError(p.line, p.col, f"nested more than {MAX_DEPTH} levels deep; a spec needs at most 3")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.DocumentStartEvent):
                documents += 1
                if documents > 1:
                    p = _pos(event.start_mark)
                    raise YamlDocError(p.line, p.col, "a spec file holds one document; move the next one ('---') to a file of its own")
        node = yaml.compose(text, Loader=_Loader)
    except yaml.composer.ComposerError as exc:
        p = _pos(exc.problem_mark or exc.context_mark)
        if "single document" in str(exc.context or ""):
            raise YamlDocError(p.line, p.col, "a spec file holds one document; move the next one ('---') to a file "
                               "of its own") from None
        raise YamlDocError(p.line, p.col, syntax_message(exc)) from None
    except yaml.MarkedYAMLError as exc:
        p = _pos(exc.problem_mark or exc.context_mark)
        raise YamlDocError(p.line, p.col, syntax_message(exc)) from None
    except yaml.YAMLError as exc:  # e.g. reader errors on control characters
        mark = getattr(exc, "position", None)
        line = text[:mark].count("\n") + 1 if isinstance(mark, int) else 1
        raise YamlDocError(line, 1, f"YAML error: {exc}") from None
    except RecursionError:  # block nesting the scan did not look at; the parser recursed too deep
        raise YamlDocError(1, 1, f"nested more than {MAX_DEPTH} levels deep; a spec needs at most 3") from None
    if node is None:
        raise YamlDocError(1, 1, "file is empty (only comments)" + _NEEDS.get(what, ""))
    if not isinstance(node, yaml.MappingNode):
        p = _pos(node.start_mark)
        kind = "a list" if isinstance(node, yaml.SequenceNode) else "a single value"
        raise YamlDocError(p.line, p.col, f"a {what} must be a mapping of fields (key: value), not {kind}")
    builder = _Builder()
    try:
        value = builder.build(node, ())
    except (yaml.constructor.ConstructorError, ValueError) as exc:
        mark = getattr(exc, "problem_mark", None)
        p = _pos(mark)
        raise YamlDocError(p.line, p.col, f"cannot read value: {getattr(exc, 'problem', None) or exc}") from None
    return YamlDoc(value=value, value_pos=builder.value_pos, key_pos=builder.key_pos)
