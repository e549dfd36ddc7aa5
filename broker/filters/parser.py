"""CESQL parser: tokens to a syntax tree, following the v1 precedence rules (section 3.6)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from broker.errors import InvalidFilter
from broker.filters import lexer
from broker.filters.lexer import Token, parse_error
from broker.filters.limits import FilterLimits, configured, exceeded
from broker.filters.nodes import (
    Attribute,
    Binary,
    Call,
    DataPath,
    Exists,
    In,
    Like,
    Literal,
    Logic,
    Node,
    Unary,
)
from broker.filters.values import INT_MAX, INT_MIN

KEYWORDS: Final = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "IN", "EXISTS", "TRUE", "FALSE"})
LOGIC_OPS: Final = frozenset({"AND", "OR", "XOR"})
COMPARISON_OPS: Final = frozenset({"=", "!=", "<>", "<", "<=", ">", ">="})
ADDITIVE_OPS: Final = frozenset({"+", "-"})
MULTIPLICATIVE_OPS: Final = frozenset({"*", "/", "%"})

_IDENTIFIER = re.compile(r"[a-z0-9]+", re.ASCII | re.IGNORECASE)
_FUNCTION_NAME = re.compile(r"[a-z][a-z_]*", re.ASCII | re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Shape:
    """How big a parsed expression is, to check it against other limits later."""

    length: int
    nodes: int
    depth: int
    in_items: int

    def check(self, limits: FilterLimits) -> None:
        """Raise ``FilterTooLarge`` when the expression is over one of ``limits``."""
        if self.length > limits.max_length:
            raise _too_long(self.length, limits)
        if self.nodes > limits.max_nodes:
            raise exceeded("max_nodes", limits, f"the expression has {self.nodes} syntax nodes")
        if self.depth > limits.max_depth:
            raise _too_deep(limits)
        if self.in_items > limits.max_in_items:
            raise exceeded("max_in_items", limits,
                           f"an IN set has {self.in_items} elements")


def parse(text: str, *, data_paths: bool = True, limits: FilterLimits | None = None) -> Node:
    """Parse a CESQL expression; raises ``InvalidFilter`` with the error's position.

    ``limits`` (the configured ones by default) bound the work: the text's length is
    checked before it is read, and parsing stops at the first node over a limit.
    """
    return parse_shaped(text, data_paths=data_paths, limits=limits)[0]


def parse_shaped(text: str, *, data_paths: bool = True, limits: FilterLimits | None = None
                 ) -> tuple[Node, Shape]:
    """``parse``, also answering the expression's ``Shape``."""
    if not isinstance(text, str):
        raise InvalidFilter("a CESQL expression must be a string")
    limits = limits or configured()
    if len(text) > limits.max_length:
        raise _too_long(len(text), limits)
    # Besides parentheses and commas, a node takes at most two tokens (a name, a literal,
    # an operator; NOT LIKE): with twice as many as that, the node limit is certainly
    # exceeded, and the lexer stops there rather than read the rest of a huge text.
    max_tokens = 4 * limits.max_nodes + 16
    try:
        tokens = lexer.tokenize(text, data_paths=data_paths, max_tokens=max_tokens)
    except lexer.TooManyTokens as exc:
        raise exceeded("max_nodes", limits, "the expression has more than"
                       f" {limits.max_nodes} syntax nodes", exc.token.position) from None
    parser = _Parser(tokens, limits)
    root = parser.parse()
    return root, Shape(len(text), parser.count, parser.deepest, parser.widest)


def _too_long(length: int, limits: FilterLimits) -> InvalidFilter:
    return exceeded("max_length", limits, f"the expression is {length} characters long")


def _too_deep(limits: FilterLimits, position: dict[str, int] | None = None) -> InvalidFilter:
    return exceeded("max_depth", limits, "the expression is nested too deeply (more than"
                    f" {limits.max_depth} levels)", position)


class _Parser:
    """Recursive descent over the token list, one method per precedence level."""

    def __init__(self, tokens: list[Token], limits: FilterLimits) -> None:
        self.tokens = tokens
        self.limits = limits
        self.index = 0
        self.nesting = 0
        self.count = 0
        self.deepest = 0
        self.widest = 0
        # Tree depth per node id; the nodes stay referenced by the tree while parsing.
        self.depths: dict[int, int] = {}

    # -- token helpers ---------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def peek(self, offset: int = 1) -> Token:
        return self.tokens[min(self.index + offset, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        if token.kind != lexer.EOF:
            self.index += 1
        return token

    def keyword(self, token: Token | None = None) -> str | None:
        token = token or self.tok
        if token.kind == lexer.WORD:
            upper = token.text.upper()
            if upper in KEYWORDS:
                return upper
        return None

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == lexer.OP and self.tok.text in ops

    def expect_op(self, op: str, what: str) -> Token:
        if not self.is_op(op):
            raise self.error(f"expected {op!r} {what}")
        return self.advance()

    def error(self, message: str, token: Token | None = None) -> InvalidFilter:
        token = token or self.tok
        if token.kind == lexer.EOF:
            message = f"{message}, found the end of the expression"
        else:
            message = f"{message}, found {token.text!r}"
        return parse_error(message, token.line, token.column)

    def node(self, node: Node, *children: Node) -> Node:
        depth = 1 + max((self.depths[id(child)] for child in children), default=0)
        if depth > self.limits.max_depth:
            raise _too_deep(self.limits, node.pos)
        self.count += 1
        if self.count > self.limits.max_nodes:
            raise exceeded("max_nodes", self.limits,
                           f"the expression has more than {self.limits.max_nodes} syntax nodes",
                           node.pos)
        self.depths[id(node)] = depth
        self.deepest = max(self.deepest, depth, self.nesting)
        return node

    # -- grammar ---------------------------------------------------------------------

    def parse(self) -> Node:
        if self.tok.kind == lexer.EOF:
            raise parse_error("empty expression", self.tok.line, self.tok.column)
        root = self.expression()
        if self.tok.kind != lexer.EOF:
            raise self.error("unexpected token after the expression")
        return root

    def expression(self) -> Node:
        self.nesting += 1
        if self.nesting > self.limits.max_depth:
            raise _too_deep(self.limits, self.tok.position)
        try:
            return self.logic()
        finally:
            self.nesting -= 1

    def logic(self) -> Node:
        # AND, OR and XOR share one precedence level and associate left to right (3.6).
        # A run of one operator becomes one flat node: each is associative and evaluates
        # left to right either way, and long generated disjunctions stay shallow.
        # The node is built once per run, not once per operand: rebuilding it each time
        # made a generated 20 000-term disjunction take seconds to parse.
        left = self.comparison()
        op = self.keyword()
        while op in LOGIC_OPS:
            op_token = self.advance()
            if isinstance(left, Logic) and left.op == op:
                operands, pos = list(left.operands), left.pos
            else:
                operands, pos = [left], op_token.position
            operands.append(self.comparison())
            while (following := self.keyword()) == op:
                self.advance()
                operands.append(self.comparison())
            left = self.node(Logic(pos, str(op), tuple(operands)), *operands)
            op = following
        return left

    def comparison(self) -> Node:
        left = self.additive()
        while self.tok.kind == lexer.OP and self.tok.text in COMPARISON_OPS:
            op_token = self.advance()
            right = self.additive()
            left = self.node(Binary(op_token.position, op_token.text, left, right), left, right)
        return left

    def additive(self) -> Node:
        left = self.multiplicative()
        while self.tok.kind == lexer.OP and self.tok.text in ADDITIVE_OPS:
            op_token = self.advance()
            right = self.multiplicative()
            left = self.node(Binary(op_token.position, op_token.text, left, right), left, right)
        return left

    def multiplicative(self) -> Node:
        left = self.postfix()
        while self.tok.kind == lexer.OP and self.tok.text in MULTIPLICATIVE_OPS:
            op_token = self.advance()
            right = self.postfix()
            left = self.node(Binary(op_token.position, op_token.text, left, right), left, right)
        return left

    def postfix(self) -> Node:
        # LIKE and IN bind tighter than every binary operator, looser than unary ones.
        operand = self.unary()
        while True:
            start = self.tok
            negated = False
            if self.keyword() == "NOT" and self.keyword(self.peek()) in ("LIKE", "IN"):
                self.advance()
                negated = True
            word = self.keyword()
            if word == "LIKE":
                self.advance()
                pattern = self.tok
                if pattern.kind != lexer.STRING:
                    raise self.error("LIKE needs a string literal pattern")
                self.advance()
                like = Like(start.position, operand, str(pattern.value), negated)
                operand = self.node(like, operand)
            elif word == "IN":
                self.advance()
                items = self.set_items()
                operand = self.node(In(start.position, operand, items, negated), operand, *items)
            else:
                return operand

    def set_items(self) -> tuple[Node, ...]:
        self.expect_op("(", "to open the IN set")
        if self.is_op(")"):
            raise self.error("an IN set needs at least one element")
        items = [self.expression()]
        while self.is_op(","):
            self.advance()
            if len(items) == self.limits.max_in_items:
                raise exceeded("max_in_items", self.limits, "an IN set has more than"
                               f" {self.limits.max_in_items} elements", self.tok.position)
            items.append(self.expression())
        self.expect_op(")", "to close the IN set")
        self.widest = max(self.widest, len(items))
        return tuple(items)

    def unary(self) -> Node:
        # Collected iteratively so that "NOT NOT ... x" does not recurse.
        prefixes: list[Token] = []
        while self.keyword() == "NOT" or self.is_op("-", "+"):
            prefixes.append(self.advance())
        if prefixes and prefixes[-1].text in ("-", "+") and self.tok.kind == lexer.INT:
            # A sign directly before digits is part of the integer literal (2.2), which is
            # how -2147483648 stays inside the 32-bit range.
            sign = prefixes.pop()
            operand = self.integer(self.advance(), sign)
        else:
            operand = self.primary()
        for prefix in reversed(prefixes):
            if prefix.text == "+":
                raise parse_error(
                    "'+' may only prefix an integer literal", prefix.line, prefix.column
                )
            op = "NOT" if prefix.kind == lexer.WORD else "-"
            operand = self.node(Unary(prefix.position, op, operand), operand)
        return operand

    def integer(self, token: Token, sign: Token | None = None) -> Node:
        where = sign or token
        digits = token.text.lstrip("0")
        negative = sign is not None and sign.text == "-"
        # The length test keeps int() away from absurdly long digit strings.
        value = int(token.text) if len(digits) <= 10 else INT_MAX + 2
        if negative:
            value = -value
        if value < INT_MIN or value > INT_MAX:
            raise parse_error(
                "integer literal is outside the 32-bit signed range", where.line, where.column
            )
        return self.node(Literal(where.position, value))

    def primary(self) -> Node:
        token = self.tok
        if token.kind == lexer.INT:
            return self.integer(self.advance())
        if token.kind == lexer.STRING:
            self.advance()
            return self.node(Literal(token.position, str(token.value)))
        if token.kind == lexer.DATA:
            self.advance()
            return self.node(DataPath(token.position, token.value, token.text))  # type: ignore[arg-type]
        if token.kind == lexer.OP and token.text == "(":
            self.advance()
            inner = self.expression()
            self.expect_op(")", "to close the parenthesis")
            return inner
        if token.kind == lexer.WORD:
            word = self.keyword(token)
            if word in ("TRUE", "FALSE"):
                self.advance()
                return self.node(Literal(token.position, word == "TRUE"))
            if word == "EXISTS":
                self.advance()
                target = self.exists_target()
                self.node(target)
                return self.node(Exists(token.position, target), target)
            if word is not None:
                raise self.error("expected an expression")
            if self.peek().kind == lexer.OP and self.peek().text == "(":
                return self.call()
            if not _IDENTIFIER.fullmatch(token.text):
                raise self.error("not a valid attribute name (letters and digits only)")
            self.advance()
            return self.node(Attribute(token.position, token.text.lower()))
        raise self.error("expected an expression")

    def exists_target(self) -> Attribute | DataPath:
        token = self.tok
        if token.kind == lexer.DATA:
            self.advance()
            return DataPath(token.position, token.value, token.text)  # type: ignore[arg-type]
        # An all-digit name lexes as an integer but is a valid identifier (2.2).
        if (token.kind == lexer.WORD and self.keyword(token) is None) or token.kind == lexer.INT:
            if _IDENTIFIER.fullmatch(token.text):
                self.advance()
                return Attribute(token.position, token.text.lower())
        raise self.error("EXISTS needs an attribute name")

    def call(self) -> Node:
        name = self.advance()
        if not _FUNCTION_NAME.fullmatch(name.text):
            raise self.error("not a valid function name", name)
        self.expect_op("(", "to open the argument list")
        args: list[Node] = []
        if not self.is_op(")"):
            args.append(self.expression())
            while self.is_op(","):
                self.advance()
                args.append(self.expression())
        self.expect_op(")", "to close the argument list")
        return self.node(Call(name.position, name.text.upper(), tuple(args)), *args)
