"""GitHub Actions expressions (``${{ … }}``): the subset our workflows use, with its semantics.

Literals, context paths (``a.b-c.d``, ``a['x']``), ``! == != && || ( )``, and the functions
``success failure always cancelled format contains startsWith``. ``&&``/``||`` return operands
like JavaScript; ``==`` compares strings case-insensitively and coerces mixed types to numbers.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'(?:[^']|'')*')"
    r"|(?P<op>==|!=|&&|\|\||[!()\[\],.])|(?P<name>[A-Za-z_][\w-]*))"
)
TEMPLATE = re.compile(r"\$\{\{(.*?)\}\}", re.S)


class ExpressionError(ValueError):
    pass


def tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = TOKEN.match(text, position)
        if not match:
            raise ExpressionError(f"cannot parse {text[position:]!r}")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class Evaluator:
    def __init__(self, contexts: Mapping[str, Any], functions: Mapping[str, Callable]) -> None:
        self.contexts, self.functions = contexts, functions

    def evaluate(self, text: str) -> Any:
        self.tokens, self.index = tokenize(text), 0
        value = self._or()
        if self.index != len(self.tokens):
            raise ExpressionError(f"unexpected {self.tokens[self.index][1]!r} in {text!r}")
        return value

    def _peek(self) -> str | None:
        return self.tokens[self.index][1] if self.index < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> tuple[str, str]:
        token = self.tokens[self.index]
        if expected is not None and token[1] != expected:
            raise ExpressionError(f"expected {expected!r}, got {token[1]!r}")
        self.index += 1
        return token

    def _or(self) -> Any:
        value = self._and()
        while self._peek() == "||":
            self._take()
            right = self._and()
            value = value if truthy(value) else right
        return value

    def _and(self) -> Any:
        value = self._compare()
        while self._peek() == "&&":
            self._take()
            right = self._compare()
            value = right if truthy(value) else value
        return value

    def _compare(self) -> Any:
        value = self._unary()
        while self._peek() in ("==", "!="):
            operator = self._take()[1]
            equal = loose_equal(value, self._unary())
            value = equal if operator == "==" else not equal
        return value

    def _unary(self) -> Any:
        if self._peek() == "!":
            self._take()
            return not truthy(self._unary())
        return self._primary()

    def _primary(self) -> Any:
        kind, text = self._take()
        if text == "(":
            value = self._or()
            self._take(")")
            return value
        if kind == "number":
            return float(text)
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self._peek() == "(":
            return self._call(text)
        value = self.contexts.get(text)
        while self._peek() in (".", "["):
            if self._take()[1] == ".":
                key = self._take()[1]
            else:
                key = self._or()
                self._take("]")
            value = value.get(key) if isinstance(value, Mapping) else None
        return value

    def _call(self, name: str) -> Any:
        self._take("(")
        args = []
        while self._peek() != ")":
            args.append(self._or())
            if self._peek() == ",":
                self._take()
        self._take(")")
        if name not in self.functions:
            raise ExpressionError(f"unsupported function {name}()")
        return self.functions[name](*args)


def truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    return value not in (None, False, 0, "")


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value) if str(value).strip() else 0.0
    except ValueError:
        return math.nan


def loose_equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.lower() == right.lower()
    if type(left) is type(right):
        return left == right
    return _number(left) == _number(right)


def to_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def interpolate(text: Any, evaluator: Evaluator) -> Any:
    """Replace every ``${{ … }}`` in a string; non-strings pass through."""
    if not isinstance(text, str):
        return text
    return TEMPLATE.sub(lambda m: to_string(evaluator.evaluate(m.group(1))), text)


def condition(text: Any, evaluator: Evaluator) -> bool:
    """An ``if:``: with or without ``${{ }}``; implicitly ``success() && …`` without a status
    function."""
    if isinstance(text, bool):
        return text
    expression = str(text).strip()
    if expression.startswith("${{") and expression.endswith("}}"):
        expression = expression[3:-2]
    if not re.search(r"\b(success|failure|always|cancelled)\(", expression):
        expression = f"success() && ({expression})"
    return truthy(evaluator.evaluate(expression))


def standard_functions(status: Callable[[], str]) -> dict[str, Callable]:
    """``status()`` says "success" or "failure" for the job so far."""
    return {
        "success": lambda: status() == "success",
        "failure": lambda: status() == "failure",
        "always": lambda: True,
        "cancelled": lambda: False,
        "format": lambda template, *args: re.sub(
            r"\{(\d+)\}", lambda m: to_string(args[int(m.group(1))]), template
        ),
        "contains": lambda haystack, needle: (
            needle in haystack
            if isinstance(haystack, list)
            else to_string(needle).lower() in to_string(haystack).lower()
        ),
        "fromJSON": json.loads,
        "startsWith": lambda text, prefix: (
            to_string(text).lower().startswith(to_string(prefix).lower())
        ),
    }
