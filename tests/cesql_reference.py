"""A literal, tree-walking CESQL v1 evaluator to check the compiled closures against.

Written from the spec text, section by section, and slow on purpose: no folding, no
fast paths, no shared code with ``broker.filters`` beyond the syntax tree and the opsbus
data-path extension. It evaluates completely (spec 3.3: every operator is total, its
operands are evaluated whatever errors arise, only AND/OR short-circuit, 3.4.2) and
collects every error with the node that raised it. ``fail_fast`` then derives the answer
opsbus gives (spec 4.1): the first error, and the zero value of the expression's type,
unless every error was raised by the outermost operator itself, which then answers its
own value (``ABS(-2147483648)``, ``NOT 'x'``, ``'5avc4' + 10``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from broker.filters import nodes
from broker.filters.values import from_json, read_data_path

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
BOOL, INT, STR = "Boolean", "Integer", "String"
ZERO: dict[str, object] = {BOOL: False, INT: 0, STR: ""}  # 3.1

# Unicode White_Space (PropList.txt), what TRIM removes (3.5.1).
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007"
    "\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True)
class Raised:
    """One entry of the error list: its kind and the node whose evaluation raised it."""

    kind: str
    node: nodes.Node


class _Eval:
    def __init__(self, event: dict[str, Any]) -> None:
        self.event = event
        self.errors: list[Raised] = []

    def fail(self, kind: str, node: nodes.Node) -> None:
        self.errors.append(Raised(kind, node))

    # -- 3.7 casts: the value, and a cast error with the target's zero value on failure --

    def cast(self, value: object, target: str, node: nodes.Node) -> object:
        if target == STR:
            if type(value) is bool:
                return "true" if value else "false"
            return str(value)
        if target == INT:
            if type(value) is bool:
                return int(value)
            if type(value) is int:
                return value
            text = str(value)
            if re.fullmatch(r"[+-]?[0-9]+", text, re.ASCII) and len(text.lstrip("+-0")) <= 10:
                number = int(text)
                if INT_MIN <= number <= INT_MAX:
                    return number
            self.fail("cast", node)
            return 0
        if type(value) is bool:
            return value
        if type(value) is int:
            return value != 0
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        self.fail("cast", node)
        return False

    # -- 3.2: an operand that is a missing attribute makes its operator answer zero --

    def operand(self, node: nodes.Node) -> tuple[object, bool]:
        """The operand's value, and whether it is a missing attribute."""
        if isinstance(node, nodes.Attribute | nodes.DataPath):
            value = self.read(node)
            if value is None:
                self.fail("missingAttribute", node)
                return False, True
            return value, False
        return self.value(node), False

    def read(self, node: nodes.Attribute | nodes.DataPath) -> object:
        if isinstance(node, nodes.DataPath):
            raw = read_data_path(self.event, node.path)
        elif node.name in ("data", "data_base64"):
            return None
        else:
            raw = self.event.get(node.name)
        value = from_json(raw)
        return value if type(value) in (bool, int, str) else None

    def value(self, node: nodes.Node) -> object:
        if isinstance(node, nodes.Literal):
            return node.value
        if isinstance(node, nodes.Attribute | nodes.DataPath):
            return self.operand(node)[0]
        if isinstance(node, nodes.Exists):
            return self.read(node.target) is not None
        if isinstance(node, nodes.Unary):
            return self.unary(node)
        if isinstance(node, nodes.Binary):
            return self.binary(node)
        if isinstance(node, nodes.Logic):
            return self.logic(node)
        if isinstance(node, nodes.Like):
            return self.like(node)
        if isinstance(node, nodes.In):
            return self.in_(node)
        assert isinstance(node, nodes.Call)
        return self.call(node)

    # -- 3.4 operators ----------------------------------------------------------------

    def unary(self, node: nodes.Unary) -> object:
        x, missing = self.operand(node.operand)
        if node.op == "NOT":
            return False if missing else not self.cast(x, BOOL, node)
        if missing:
            return 0
        number = self.cast(x, INT, node)
        assert isinstance(number, int)
        if number == INT_MIN:
            self.fail("math", node)
            return INT_MIN
        return -number

    def binary(self, node: nodes.Binary) -> object:
        x, x_missing = self.operand(node.left)
        y, y_missing = self.operand(node.right)
        op = node.op
        if op in ("=", "!=", "<>"):
            if x_missing or y_missing:
                return False
            # 3.7 rule 2.2: '=' is ambiguous, x takes y's type.
            target = BOOL if type(y) is bool else INT if type(y) is int else STR
            equal = self.cast(x, target, node) == y
            return equal if op == "=" else not equal
        if op in ("<", "<=", ">", ">="):
            if x_missing or y_missing:
                return False
            a, b = self.cast(x, INT, node), self.cast(y, INT, node)
            assert isinstance(a, int) and isinstance(b, int)
            return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
        if x_missing or y_missing:
            return 0
        a, b = self.cast(x, INT, node), self.cast(y, INT, node)
        assert isinstance(a, int) and isinstance(b, int)
        if op in ("/", "%") and b == 0:
            self.fail("math", node)
            return 0
        if op == "+":
            exact = a + b
        elif op == "-":
            exact = a - b
        elif op == "*":
            exact = a * b
        else:
            quotient = abs(a) // abs(b) * (1 if (a < 0) == (b < 0) else -1)
            exact = quotient if op == "/" else a - b * quotient
        wrapped = (exact - INT_MIN) % 2**32 + INT_MIN
        if wrapped != exact:
            self.fail("math", node)
        return wrapped

    def logic(self, node: nodes.Logic) -> object:
        result, missing = self.operand(node.operands[0])
        result = self.cast(result, BOOL, node)
        for operand in node.operands[1:]:
            if node.op == "AND" and result is False:
                break  # short-circuit, 3.4.2
            if node.op == "OR" and result is True:
                break
            value, operand_missing = self.operand(operand)
            missing = missing or operand_missing
            flag = self.cast(value, BOOL, node)
            if node.op == "AND":
                result = flag
            elif node.op == "OR":
                result = flag
            else:
                result = result is not flag
        return False if missing else result

    def like(self, node: nodes.Like) -> object:
        x, missing = self.operand(node.operand)
        if missing:
            return False
        text = self.cast(x, STR, node)
        regex = "".join(
            re.escape(piece[1]) if len(piece) == 2 else ".*" if piece == "%" else
            "." if piece == "_" else re.escape(piece)
            for piece in re.findall(r"\\[%_]|.", node.pattern, re.DOTALL)
        )  # fmt: skip
        matched = re.fullmatch(regex, str(text), re.DOTALL) is not None
        return matched is not node.negated

    def in_(self, node: nodes.In) -> object:
        x, missing = self.operand(node.operand)
        items = [self.operand(item) for item in node.items]
        if missing or any(item_missing for _, item_missing in items):
            return False
        # 3.4.5 and 3.7: '=' semantics, every element cast to x's type.
        target = BOOL if type(x) is bool else INT if type(x) is int else STR
        found = False
        for item, _ in items:
            candidate = self.cast(item, target, node)
            found = found or (type(candidate) is type(x) and candidate == x)
        return found is not node.negated

    # -- 3.5 functions ----------------------------------------------------------------

    def call(self, node: nodes.Call) -> object:
        args = [self.operand(arg) for arg in node.args]
        signature = _SIGNATURES.get((node.name, len(args)))
        if signature is None and node.name in _VARIADIC and len(args) >= _VARIADIC[node.name]:
            signature = (STR,) * len(args)
        if signature is None:
            self.fail("missingFunction", node)  # 3.5: false plus the error
            return False
        returns = _RETURNS[node.name]
        if any(missing for _, missing in args):
            return ZERO[returns]
        values = [
            value if kind is None else self.cast(value, kind, node)
            for (value, _), kind in zip(args, signature, strict=True)
        ]
        return self.builtin(node, values)

    def builtin(self, node: nodes.Call, args: list[Any]) -> object:
        name = node.name
        if name == "ABS":
            if args[0] == INT_MIN:
                self.fail("math", node)
                return INT_MAX
            return abs(args[0])
        if name == "LENGTH":
            return len(args[0])
        if name == "CONCAT":
            return "".join(args)
        if name == "CONCAT_WS":
            return args[0].join(args[1:])
        if name in ("LOWER", "UPPER"):
            return args[0].lower() if name == "LOWER" else args[0].upper()
        if name == "TRIM":
            text = args[0]
            start, end = 0, len(text)
            while start < end and text[start] in WHITE_SPACE:
                start += 1
            while end > start and text[end - 1] in WHITE_SPACE:
                end -= 1
            return text[start:end]
        if name in ("LEFT", "RIGHT"):
            text, count = args
            if count < 0:
                self.fail("functionEvaluation", node)
                return text
            return text[:count] if name == "LEFT" else text[len(text) - min(count, len(text)):]
        if name == "SUBSTRING":
            text, pos = args[0], args[1]
            if pos > len(text) or pos < -len(text) or (len(args) == 3 and args[2] < 0):
                self.fail("functionEvaluation", node)
                return ""
            if pos == 0:
                return ""
            start = pos - 1 if pos > 0 else len(text) + pos
            return text[start:] if len(args) == 2 else text[start : start + args[2]]
        if name in ("INT", "BOOL", "STRING"):
            return self.cast(args[0], {"INT": INT, "BOOL": BOOL, "STRING": STR}[name], node)
        if name == "IS_INT":
            errors = len(self.errors)
            self.cast(args[0], INT, node)
            valid = len(self.errors) == errors
            del self.errors[errors:]
            return valid
        assert name == "IS_BOOL"
        return args[0].lower() in ("true", "false")


_SIGNATURES: dict[tuple[str, int], tuple[str | None, ...]] = {
    ("ABS", 1): (INT,),
    ("LENGTH", 1): (STR,),
    ("LOWER", 1): (STR,),
    ("UPPER", 1): (STR,),
    ("TRIM", 1): (STR,),
    ("LEFT", 2): (STR, INT),
    ("RIGHT", 2): (STR, INT),
    ("SUBSTRING", 2): (STR, INT),
    ("SUBSTRING", 3): (STR, INT, INT),
    ("INT", 1): (None,),
    ("BOOL", 1): (None,),
    ("STRING", 1): (None,),
    ("IS_INT", 1): (STR,),
    ("IS_BOOL", 1): (STR,),
}
_VARIADIC = {"CONCAT": 0, "CONCAT_WS": 1}
_RETURNS = {
    "ABS": INT, "LENGTH": INT, "CONCAT": STR, "CONCAT_WS": STR, "LOWER": STR, "UPPER": STR,
    "TRIM": STR, "LEFT": STR, "RIGHT": STR, "SUBSTRING": STR, "INT": INT, "BOOL": BOOL,
    "STRING": STR, "IS_INT": BOOL, "IS_BOOL": BOOL,
}  # fmt: skip


def static_type(node: nodes.Node) -> str:
    """The return type of a node; Boolean where it cannot be known (3.2)."""
    if isinstance(node, nodes.Literal):
        value = node.value
        return BOOL if type(value) is bool else INT if type(value) is int else STR
    if isinstance(node, nodes.Unary):
        return BOOL if node.op == "NOT" else INT
    if isinstance(node, nodes.Binary):
        return INT if node.op in "+-*/%" else BOOL
    if isinstance(node, nodes.Call):
        signature = _SIGNATURES.get((node.name, len(node.args)))
        known = signature is not None or (
            node.name in _VARIADIC and len(node.args) >= _VARIADIC[node.name]
        )
        return _RETURNS[node.name] if known else BOOL
    return BOOL


def complete(root: nodes.Node, event: dict[str, Any]) -> tuple[object, list[Raised]]:
    """Complete evaluation mode (4.1): the value and every error, in evaluation order."""
    evaluation = _Eval(event)
    value = evaluation.value(root)
    return value, evaluation.errors


def fail_fast(root: nodes.Node, event: dict[str, Any]) -> tuple[object, str | None]:
    """What opsbus answers: ``(value, first error kind or None)``."""
    value, errors = complete(root, event)
    if not errors:
        return value, None
    if all(error.node is root for error in errors):
        return value, errors[0].kind
    return ZERO[static_type(root)], errors[0].kind
