"""The spec grammar shared by defenses and attacks.

A spec names a component, optionally with bracketed parameters and, for defenses, a
parenthesised list of pre-aggregators applied left to right::

    spec   := NAME params? ( "(" spec ("," spec)* ")" )?
    params := "[" KEY "=" VALUE ("," KEY "=" VALUE)* "]"

Examples: ``cm``, ``trMean(NNM)``, ``rfa(buck[s=2])``, ``cclip[tau=10,iters=3]``,
``cm(nnm,buck[s=3])``, ``minmax[dir=sign]``. Names are case-insensitive; values are
parsed as int, float, bool (``true``/``false``) or left as lower-case strings.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z0-9_\-.]*)|(-?[0-9.][0-9.eE+\-]*)|([\[\]\(\),=]))")


@dataclass(frozen=True)
class Spec:
    """A parsed component spec: ``name[params](children...)``."""

    name: str
    params: dict[str, int | float | bool | str] = field(default_factory=dict)
    children: tuple[Spec, ...] = ()

    def __str__(self) -> str:
        out = self.name
        if self.params:
            out += "[" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params.items()) + "]"
        if self.children:
            out += "(" + ",".join(str(c) for c in self.children) + ")"
        return out


def _fmt(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _value(key: str, text: str) -> int | float | bool | str:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            value = cast(text)
        except ValueError:
            continue
        if not math.isfinite(value):  # inf, nan, 1e400
            raise ValueError(f"{key}: must be a finite number, got {text!r}")
        return value
    return low


def _tokenize(text: str) -> list[str]:
    tokens, pos = [], 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"cannot parse spec {text!r} at position {pos}: {text[pos:]!r}")
        tokens.append(next(g for g in m.groups() if g is not None))
        pos = m.end()
    return tokens


def parse(text: str) -> Spec:
    """Parse a spec string; raises ``ValueError`` with the position of the first error."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"empty spec {text!r}")
    tokens = _tokenize(text)
    spec, rest = _parse_spec(tokens, text)
    if rest:
        raise ValueError(f"unexpected {''.join(rest)!r} at the end of spec {text!r}")
    return spec


def _expect(tokens: list[str], tok: str, text: str) -> list[str]:
    if not tokens or tokens[0] != tok:
        got = tokens[0] if tokens else "end of input"
        raise ValueError(f"expected {tok!r} but found {got!r} in spec {text!r}")
    return tokens[1:]


def _parse_spec(tokens: list[str], text: str) -> tuple[Spec, list[str]]:
    if not tokens or not re.match(r"[A-Za-z_]", tokens[0]):
        raise ValueError(f"expected a name in spec {text!r}")
    name, tokens = tokens[0].lower(), tokens[1:]
    params: dict[str, int | float | bool | str] = {}
    children: list[Spec] = []
    if tokens and tokens[0] == "[":
        tokens = tokens[1:]
        while True:
            if not tokens:
                raise ValueError(f"unclosed '[' in spec {text!r}")
            key, tokens = tokens[0].lower(), tokens[1:]
            tokens = _expect(tokens, "=", text)
            if not tokens:
                raise ValueError(f"missing value for {key!r} in spec {text!r}")
            if key in params:
                raise ValueError(f"{key}: given twice in spec {text!r}")
            params[key], tokens = _value(key, tokens[0]), tokens[1:]
            if tokens and tokens[0] == ",":
                tokens = tokens[1:]
                continue
            tokens = _expect(tokens, "]", text)
            break
    if tokens and tokens[0] == "(":
        tokens = tokens[1:]
        while True:
            child, tokens = _parse_spec(tokens, text)
            children.append(child)
            if tokens and tokens[0] == ",":
                tokens = tokens[1:]
                continue
            tokens = _expect(tokens, ")", text)
            break
    return Spec(name, params, tuple(children)), tokens


def slug(text: str) -> str:
    """A file-name-safe, stable slug of a spec: ``trMean(NNM)`` -> ``trmean-nnm``."""
    s = re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-")
    return s or "none"


def check_param(owner: str, key: str, value: object, default: object) -> None:
    """Raise ``ValueError`` unless ``value`` has the type of the parameter's ``default``:
    a boolean, an integer, a finite number, a string, or (default ``None``) an integer."""
    if isinstance(default, bool):
        ok, kind = isinstance(value, bool), "true or false"
    elif isinstance(default, int) or default is None:
        ok, kind = isinstance(value, int) and not isinstance(value, bool), "an integer"
        ok = ok or (default is None and value is None)
    elif isinstance(default, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        ok, kind = ok and math.isfinite(float(value)), "a finite number"  # type: ignore[arg-type]
    else:
        ok, kind = isinstance(value, str), "a word"
    if not ok:
        raise ValueError(f"{owner}: {key} must be {kind}, got {value!r}")
