"""JSON read the way Go's ``encoding/json`` Decoder reads a request body, errors included.

Toxiproxy answers a malformed body with the decoder's own words ("unexpected EOF",
"invalid character '}' after object key"); clients and tests compare those strings, so the
errors here are found by a port of the decoder's byte scanner, run only when parsing failed.
Numbers keep their literal text, because Go quotes it in type errors ("number 1e3").
"""

from __future__ import annotations

import json
import re

__all__ = ["GoFloat", "GoInt", "JsonSyntaxError", "decode", "literal"]


class JsonSyntaxError(ValueError):
    """The body is not one JSON value; the message is Go's."""


class GoInt(int):
    """An integer that remembers how it was written."""

    text: str


class GoFloat(float):
    """A float that remembers how it was written."""

    text: str


def _int(text: str) -> GoInt:
    number = GoInt(text)
    number.text = text
    return number


def _float(text: str) -> GoFloat:
    number = GoFloat(text)
    number.text = text
    return number


def _constant(name: str) -> object:
    raise ValueError(name)  # NaN, Infinity: not JSON; the scanner names the character


_DECODER = json.JSONDecoder(parse_int=_int, parse_float=_float, parse_constant=_constant)


def literal(number: float) -> str:
    """The number as the body spelled it (Go quotes that, not a re-formatting)."""
    text = getattr(number, "text", None)
    return text if isinstance(text, str) else repr(number)


def decode(body: bytes) -> object:
    """The first JSON value of ``body`` (Go's Decoder ignores what follows it)."""
    # Go keeps invalid UTF-8 inside strings as U+FFFD rather than failing.
    text = body.decode("utf-8", errors="replace").lstrip(" \t\r\n")
    if not text:
        raise JsonSyntaxError("EOF")
    try:
        value, _ = _DECODER.raw_decode(text)
    except (ValueError, RecursionError):
        raise JsonSyntaxError(scan_error(body)) from None
    if _SURROGATE_ESCAPE.search(text):
        value = _replace_lone_surrogates(value)
    return value


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _replace_lone_surrogates(value: object) -> object:
    """Go decodes an unpaired ``\\ud800`` as U+FFFD; Python keeps it (and cannot encode it)."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_replace_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            _LONE_SURROGATE.sub("\ufffd", key): _replace_lone_surrogates(item)
            for key, item in value.items()
        }
    return value


# -- a port of encoding/json's scanner, for its error messages ---------------------------------

_SPACE = frozenset(" \t\r\n")
_DIGITS = frozenset("0123456789")
_HEX = frozenset("0123456789abcdefABCDEF")
_ESCAPES = frozenset('bfnrt\\/"')
_LITERALS = {"t": "true", "f": "false", "n": "null"}
_MAX_DEPTH = 10000
_KEY_START = "looking for beginning of object key string"


def quote_char(c: str) -> str:
    """Go's ``quoteChar``: how the scanner shows the offending byte."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    named.update({"\v": "\\v", "\\": "\\\\"})
    if c in named:
        return f"'{named[c]}'"
    if c.isprintable():
        return f"'{c}'"
    return f"'\\x{ord(c):02x}'" if ord(c) < 0x80 else f"'\\u{ord(c):04x}'"


def _invalid(c: str, context: str) -> str:
    return f"invalid character {quote_char(c)} {context}"


def scan_error(body: bytes) -> str:
    """Go's Decoder error for a body that is not valid JSON (bytes read as runes, like Go)."""
    text = body.decode("latin-1")
    stack: list[str] = []  # "key" / "value" for objects, "array" for arrays
    i, n = 0, len(text)

    def skip_space(j: int) -> int:
        while j < n and text[j] in _SPACE:
            j += 1
        return j

    def end_value(j: int) -> tuple[int, str | None, bool]:
        """After a value: (next index, error, whether the top-level value is complete)."""
        while True:
            if not stack:
                return j, None, True
            j = skip_space(j)
            if j >= n:
                return j, "unexpected EOF", False
            c, top = text[j], stack[-1]
            if top == "key":
                if c != ":":
                    return j, _invalid(c, "after object key"), False
                stack[-1] = "value"
                return j + 1, None, False
            if top == "value":
                if c == ",":
                    stack[-1] = "key"
                    j = skip_space(j + 1)
                    if j >= n:
                        return j, "unexpected EOF", False
                    if text[j] != '"':
                        return (
                            j,
                            _invalid(text[j], _KEY_START),
                            False,
                        )
                    return j, None, False
                if c == "}":
                    stack.pop()
                    j += 1
                    continue
                return j, _invalid(c, "after object key:value pair"), False
            if c == ",":
                return j + 1, None, False
            if c == "]":
                stack.pop()
                j += 1
                continue
            return j, _invalid(c, "after array element"), False

    def number(j: int) -> tuple[int, str | None]:
        if text[j] == "-":
            j += 1
            if j >= n:
                return j, "unexpected EOF"
            if text[j] not in _DIGITS:
                return j, _invalid(text[j], "in numeric literal")
        if text[j] == "0":
            j += 1
        else:
            while j < n and text[j] in _DIGITS:
                j += 1
        if j < n and text[j] == ".":
            j += 1
            if j >= n:
                return j, "unexpected EOF"
            if text[j] not in _DIGITS:
                return j, _invalid(text[j], "after decimal point in numeric literal")
            while j < n and text[j] in _DIGITS:
                j += 1
        if j < n and text[j] in "eE":
            j += 1
            if j < n and text[j] in "+-":
                j += 1
            if j >= n:
                return j, "unexpected EOF"
            if text[j] not in _DIGITS:
                return j, _invalid(text[j], "in exponent of numeric literal")
            while j < n and text[j] in _DIGITS:
                j += 1
        return j, None

    def string(j: int) -> tuple[int, str | None]:
        j += 1  # the opening quote
        while j < n:
            c = text[j]
            if c == '"':
                return j + 1, None
            if c == "\\":
                j += 1
                if j >= n:
                    break
                if text[j] == "u":
                    for k in range(j + 1, j + 5):
                        if k >= n:
                            return k, "unexpected EOF"
                        if text[k] not in _HEX:
                            return k, _invalid(text[k], "in \\u hexadecimal character escape")
                    j += 5
                    continue
                if text[j] not in _ESCAPES:
                    return j, _invalid(text[j], "in string escape code")
            elif c < " ":
                return j, _invalid(c, "in string literal")
            j += 1
        return j, "unexpected EOF"

    while True:
        # Looking for the beginning of a value (or of an empty container's end).
        i = skip_space(i)
        if i >= n:
            return "unexpected EOF"
        c = text[i]
        if c == "{" or c == "[":
            if len(stack) >= _MAX_DEPTH:
                return "exceeded max depth"
            i = skip_space(i + 1)
            if i >= n:
                return "unexpected EOF"
            closer = "}" if c == "{" else "]"
            if text[i] == closer:
                i, error, done = end_value(i + 1)
            elif c == "{":
                if text[i] != '"':
                    return _invalid(text[i], _KEY_START)
                stack.append("key")
                continue
            else:
                stack.append("array")
                continue
        elif c == '"':
            i, error = string(i)
            if error is None:
                i, error, done = end_value(i)
        elif c == "-" or c in _DIGITS:
            i, error = number(i)
            if error is None:
                i, error, done = end_value(i)
        elif c in _LITERALS:
            word = _LITERALS[c]
            for k, expected in enumerate(word[1:], start=i + 1):
                if k >= n:
                    return "unexpected EOF"
                if text[k] != expected:
                    return _invalid(text[k], f"in literal {word} (expecting '{expected}')")
            i, error, done = end_value(i + len(word))
        else:
            return _invalid(c, "looking for beginning of value")
        if error is not None:
            return error
        if done:
            return "unexpected EOF"  # valid after all: only a truncated body gets here
