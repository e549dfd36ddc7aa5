"""Compile a CESQL syntax tree into nested Python closures, evaluated without a tree walk.

Each closure takes the event dict and returns a CESQL value (bool, int or str). Errors
follow the spec's fail-fast mode (section 4.1): the node that meets an error raises
``Failure`` carrying the value it defines for that case; nothing on the way up catches it,
so every ancestor effectively answers the zero value of its own type, and only the
outermost wrapper (``Program``) turns it into the ``(value, error)`` pair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from broker.filters import functions as fn
from broker.filters.like import compile_like
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
from broker.filters.values import (
    ANY,
    BOOL,
    CAST,
    GENERIC,
    INT,
    INT_MAX,
    INT_MIN,
    MATH,
    MISSING,
    MISSING_ATTRIBUTE,
    MISSING_FUNCTION,
    PAYLOAD_KEYS,
    STR,
    EvalError,
    Failure,
    cast_bool,
    cast_int,
    cast_str,
    cast_to,
    from_json,
    read_data_path,
    type_of,
    zero_of,
)

Event = dict[str, Any]
Evaluator = Callable[[Event], object]

# Evaluating a constant subtree needs an event; it never reads one.
_NO_EVENT: Final[Event] = {}


@dataclass(frozen=True, slots=True)
class Compiled:
    """A compiled node: its closure, static type, and its value when it is a constant.

    ``parts`` are the compiled operands of an AND/OR/XOR chain, kept for the filter-mode
    matcher so that it need not compile them a second time.
    """

    run: Evaluator
    type: str
    constant: bool = False
    value: object = None
    parts: tuple[Compiled, ...] = ()


@dataclass(frozen=True, slots=True)
class Program:
    """A whole compiled expression: the root closure plus what ``evaluate`` needs around it.

    ``match`` is the filter-mode entry point (section 1.2): true only for a Boolean true
    reached without any error.
    """

    root: Node
    run: Evaluator
    type: str
    match: Callable[[Event], bool]

    def evaluate(self, event: Event) -> tuple[object, EvalError | None]:
        """Evaluate against an event; never raises (an unexpected fault is a generic error)."""
        try:
            return self.run(event), None
        except Failure as failure:
            value = failure.value if failure.node is self.root else zero_of(self.type)
            return value, failure.error
        except Exception as exc:  # a malformed event must not escape as an exception
            return zero_of(self.type), EvalError(GENERIC, f"evaluation failed: {exc!r}", None)


def compile_program(root: Node) -> Program:
    """Compile a parsed expression."""
    compiled = compile_node(root)
    return Program(root, compiled.run, compiled.type, _matcher(root, compiled))


# Outcomes of a node in filter mode, besides True and False.
_ERROR: Final = object()  # evaluating the node certainly fails
_OTHER: Final = object()  # not a plain Boolean: only a full evaluation can tell


def _matcher(root: Node, compiled: Compiled) -> Callable[[Event], bool]:
    """The filter-mode entry point: a Boolean true without errors, else false.

    In a route table most expressions name attributes or data fields that most events do
    not have, and a missing one always ends in an error. Raising and unwinding costs far
    more than a dict lookup, so before an operand of AND/OR is evaluated, the attributes
    it reads unconditionally are looked up, and an absent one answers "no match" without
    running anything. Anything unusual (an operand that is not a Boolean) falls back to
    evaluating the whole expression, which is pure, so the answer is the same.
    """
    run = compiled.run
    if compiled.constant:
        return lambda event: compiled.value is True
    outcome = _outcome(root, compiled)

    def match(event: Event) -> bool:
        result = outcome(event)
        if result is _OTHER:
            try:
                return run(event) is True
            except Exception:
                return False
        return result is True

    return match


def _outcome(node: Node, compiled: Compiled) -> Callable[[Event], object]:
    """``event -> True | False | _ERROR | _OTHER`` for ``node``, checking reads first."""
    run = compiled.run
    if isinstance(node, Logic) and node.op == "OR" and compiled.parts:
        # Only the first operand of OR is always evaluated: check each one's reads just
        # before it would run.
        parts = tuple(_outcome(operand, part)
                  for operand, part in zip(node.operands, compiled.parts, strict=True))

        def any_true(event: Event) -> object:
            for part in parts:
                result = part(event)
                if result is True:
                    return True
                if result is not False:
                    return result  # _ERROR or _OTHER
            return False

        return any_true

    names: list[str] = []
    paths: list[tuple[str, ...]] = []
    for read in _reads_for_true(node):
        if isinstance(read, Attribute):
            if read.name not in names:
                names.append(read.name)
        elif read.path not in paths:
            paths.append(read.path)
    if any(name in PAYLOAD_KEYS for name in names):
        return lambda event: _ERROR
    required_names = tuple(names)
    required_paths = tuple(paths)

    def leaf(event: Event) -> object:
        try:
            for name in required_names:
                if event.get(name) is None:
                    return _ERROR
            for path in required_paths:
                value = read_data_path(event, path)
                if value is MISSING or value is None:
                    return _ERROR
            result = run(event)
        except Exception:  # Failure, or a malformed event
            return _ERROR
        if result is True or result is False:
            return result
        return _OTHER

    return leaf


def _reads_for_true(node: Node) -> list[Attribute | DataPath]:
    """Reads that must succeed for ``node`` to be true without error.

    For AND that is every operand's reads: an evaluation that stops before an operand
    has met a false one, and one that gets to it fails on the missing read.
    """
    if isinstance(node, Logic) and node.op == "AND":
        return [read for operand in node.operands for read in _reads_for_true(operand)]
    return _required_reads(node)


def _required_reads(node: Node) -> list[Attribute | DataPath]:
    """Attribute reads that every evaluation of ``node`` performs (none short-circuit)."""
    if isinstance(node, Attribute | DataPath):
        return [node]
    if isinstance(node, Binary):
        return [*_required_reads(node.left), *_required_reads(node.right)]
    if isinstance(node, Unary | Like):
        return _required_reads(node.operand)
    if isinstance(node, In):
        return [*_required_reads(node.operand),
                *(read for item in node.items for read in _required_reads(item))]
    if isinstance(node, Logic):
        return _required_reads(node.operands[0])
    if isinstance(node, Call):
        return [read for arg in node.args for read in _required_reads(arg)]
    return []


def compile_node(node: Node) -> Compiled:
    """Compile one node (recursively), folding subtrees that are constant."""
    compiler = _COMPILERS[type(node)]
    return compiler(node)


def _constant(value: object) -> Compiled:
    def run(event: Event) -> object:
        return value

    return Compiled(run, type_of(value), True, value)


def _fold(result: Compiled, *children: Compiled) -> Compiled:
    """Replace a pure node over constant children by its value, unless it fails.

    A failing constant (``1 / 0``) stays a closure so its error is reported at evaluation,
    where the spec puts it, rather than becoming a compile error.
    """
    if not all(child.constant for child in children):
        return result
    try:
        value = result.run(_NO_EVENT)
    except Exception:
        return result
    return Compiled(_constant(value).run, result.type, True, value)


def _fail(node: Node, kind: str, message: str, value: object) -> Failure:
    return Failure(EvalError(kind, message, node.pos), value, node)


# -- leaves ------------------------------------------------------------------------------


def _literal(node: Literal) -> Compiled:
    return _constant(node.value)


def _attribute(node: Attribute) -> Compiled:
    name = node.name
    missing = EvalError(MISSING_ATTRIBUTE, f"the event has no attribute {name!r}", node.pos)

    if name in PAYLOAD_KEYS:
        # data is the payload, not a context attribute: plain CESQL cannot read it.
        def absent(event: Event) -> object:
            raise Failure(missing, False, node)

        return Compiled(absent, ANY)

    def read(event: Event) -> object:
        value = event.get(name, MISSING)
        kind = type(value)
        if kind is str or kind is bool:
            return value
        value = from_json(value)
        if value is MISSING:
            raise Failure(missing, False, node)
        return value

    return Compiled(read, ANY)


def _data_path(node: DataPath) -> Compiled:
    path = node.path
    missing = EvalError(MISSING_ATTRIBUTE, f"the event data has no {node.text!r}", node.pos)

    def read(event: Event) -> object:
        value = from_json(read_data_path(event, path))
        if value is MISSING:
            raise Failure(missing, False, node)
        return value

    return Compiled(read, ANY)


def _exists(node: Exists) -> Compiled:
    target = node.target
    if isinstance(target, DataPath):
        path = target.path

        def data_exists(event: Event) -> object:
            value = read_data_path(event, path)
            return value is not MISSING and value is not None

        return Compiled(data_exists, BOOL)
    name = target.name
    if name in PAYLOAD_KEYS:
        return _constant(False)

    def exists(event: Event) -> object:
        return event.get(name) is not None

    return Compiled(exists, BOOL)


# -- unary -------------------------------------------------------------------------------


def _unary(node: Unary) -> Compiled:
    operand = compile_node(node.operand)
    run = operand.run
    if node.op == "NOT":

        def not_(event: Event) -> object:
            value = run(event)
            if value is True:
                return False
            if value is False:
                return True
            flag, message = cast_bool(value)
            if message is not None:
                raise _fail(node, CAST, message, not flag)
            return not flag

        return _fold(Compiled(not_, BOOL), operand)

    def negate(event: Event) -> object:
        value = run(event)
        message = None
        if type(value) is not int:
            value, message = cast_int(value)
        if message is not None:
            raise _fail(node, CAST, message, -value)
        if value == INT_MIN:
            raise _fail(node, MATH, "-(-2147483648) overflows a 32-bit integer", INT_MIN)
        return -value

    return _fold(Compiled(negate, INT), operand)


# -- binary ------------------------------------------------------------------------------


def _wrap32(value: int) -> int:
    return (value - INT_MIN) % 2**32 + INT_MIN


def _arithmetic(node: Binary, left: Compiled, right: Compiled) -> Compiled:
    op = node.op
    lrun = left.run
    rrun = right.run

    def compute(a: int, b: int) -> tuple[int, str | None]:
        if op == "+":
            result = a + b
        elif op == "-":
            result = a - b
        elif op == "*":
            result = a * b
        else:
            if b == 0:
                return 0, "division by zero" if op == "/" else "modulo by zero"
            # Truncated division (section 3.4.2): round towards zero, remainder takes the
            # dividend's sign; Python's // and % floor instead.
            quotient = abs(a) // abs(b)
            if (a < 0) != (b < 0):
                quotient = -quotient
            result = quotient if op == "/" else a - b * quotient
        if result < INT_MIN or result > INT_MAX:
            return _wrap32(result), f"{a} {op} {b} overflows a 32-bit integer"
        return result, None

    def arithmetic(event: Event) -> object:
        a = lrun(event)
        b = rrun(event)
        cast_error = None
        if type(a) is not int:
            a, cast_error = cast_int(a)
        if type(b) is not int:
            b, message = cast_int(b)
            cast_error = cast_error or message
        result, math_error = compute(a, b)
        if cast_error is not None:
            raise _fail(node, CAST, cast_error, result)
        if math_error is not None:
            raise _fail(node, MATH, math_error, result)
        return result

    return _fold(Compiled(arithmetic, INT), left, right)


def _ordering(node: Binary, left: Compiled, right: Compiled) -> Compiled:
    op = node.op
    lrun = left.run
    rrun = right.run
    test: Callable[[int, int], bool] = {
        "<": int.__lt__,
        "<=": int.__le__,
        ">": int.__gt__,
        ">=": int.__ge__,
    }[op]

    def ordering(event: Event) -> object:
        a = lrun(event)
        b = rrun(event)
        if type(a) is int and type(b) is int:
            return test(a, b)
        cast_error = None
        if type(a) is not int:
            a, cast_error = cast_int(a)
        if type(b) is not int:
            b, message = cast_int(b)
            cast_error = cast_error or message
        result = test(a, b)
        if cast_error is not None:
            raise _fail(node, CAST, cast_error, result)
        return result

    return _fold(Compiled(ordering, BOOL), left, right)


def _equality(node: Binary, left: Compiled, right: Compiled) -> Compiled:
    # "=" is ambiguous (defined for all three types): the left operand is cast to the type
    # of the right one (section 3.7, rule 2.2), which is what makes `sequence = 10` work.
    want_equal = node.op == "="
    lrun = left.run
    rrun = right.run

    if right.constant:
        expected = right.value
        expected_type = type(expected)
        target = type_of(expected)

        def equals_constant(event: Event) -> object:
            value = lrun(event)
            if type(value) is expected_type:
                return (value == expected) is want_equal
            value, message = cast_to(value, target)
            result = (value == expected) is want_equal
            if message is not None:
                raise _fail(node, CAST, message, result)
            return result

        return _fold(Compiled(equals_constant, BOOL), left, right)

    def equals(event: Event) -> object:
        a = lrun(event)
        b = rrun(event)
        if type(a) is type(b):
            return (a == b) is want_equal
        a, message = cast_to(a, type_of(b))
        result = (a == b) is want_equal
        if message is not None:
            raise _fail(node, CAST, message, result)
        return result

    return _fold(Compiled(equals, BOOL), left, right)


def _binary(node: Binary) -> Compiled:
    left = compile_node(node.left)
    right = compile_node(node.right)
    if node.op in ("=", "!=", "<>"):
        return _equality(node, left, right)
    if node.op in ("<", "<=", ">", ">="):
        return _ordering(node, left, right)
    return _arithmetic(node, left, right)


# -- logic -------------------------------------------------------------------------------


def _logic(node: Logic) -> Compiled:
    operands = [compile_node(operand) for operand in node.operands]
    runs = tuple(operand.run for operand in operands)

    def as_bool(value: object, pending: EvalError | None) -> tuple[bool, EvalError | None]:
        flag, message = cast_bool(value)
        if message is not None and pending is None:
            pending = EvalError(CAST, message, node.pos)
        return flag, pending

    def finish(result: bool, pending: EvalError | None) -> bool:
        if pending is not None:
            raise Failure(pending, result, node)
        return result

    def earlier(pending: EvalError | None) -> None:
        # An operand failed after this operator met a cast error on an earlier one: the
        # cast error came first, and the operator answers its zero value.
        if pending is not None:
            raise Failure(pending, False, node) from None

    if node.op == "XOR":

        def xor(event: Event) -> object:
            result = False
            pending = None
            try:
                for run in runs:
                    value = run(event)
                    if type(value) is not bool:
                        value, pending = as_bool(value, pending)
                    result = result is not value
            except Failure:
                earlier(pending)
                raise
            return finish(result, pending)

        return _fold(Compiled(xor, BOOL, parts=tuple(operands)), *operands)

    # AND stops at the first false operand, OR at the first true one (short-circuit, 3.4.2).
    stop = node.op == "OR"

    def slow(event: Event, value: object, rest: Any) -> bool:
        # Reached when an operand is not a Boolean: cast it, remember a cast error, go on.
        flag, pending = as_bool(value, None)
        if flag is stop:
            return finish(stop, pending)
        try:
            for run in rest:
                value = run(event)
                if type(value) is not bool:
                    value, pending = as_bool(value, pending)
                if value is stop:
                    return finish(stop, pending)
        except Failure as failure:
            if failure.node is not node:
                earlier(pending)
            raise
        return finish(not stop, pending)

    def chain(event: Event) -> object:
        rest = iter(runs)
        for run in rest:
            value = run(event)
            if value is stop:
                return stop
            if value is not (not stop):
                return slow(event, value, rest)
        return not stop

    return _fold(Compiled(chain, BOOL, parts=tuple(operands)), *operands)


# -- LIKE, IN ----------------------------------------------------------------------------


def _like(node: Like) -> Compiled:
    operand = compile_node(node.operand)
    run = operand.run
    matcher = compile_like(node.pattern)
    negated = node.negated

    def like(event: Event) -> object:
        value = run(event)
        if type(value) is not str:
            value = cast_str(value)
        return matcher(value) is not negated

    return _fold(Compiled(like, BOOL), operand)


def _in(node: In) -> Compiled:
    # Every element is evaluated (only AND and OR short-circuit, section 3.4.2) and cast to
    # x's type (3.4.5); an element that does not cast takes that type's zero value and is
    # still compared, with a cast error (3.3, 3.7).
    operand = compile_node(node.operand)
    items = [compile_node(item) for item in node.items]
    run = operand.run
    negated = node.negated

    if all(item.constant for item in items):
        return _fold(_in_constants(node, operand, [item.value for item in items]), operand)

    runs = tuple(item.run for item in items)

    def in_(event: Event) -> object:
        value = run(event)
        candidates = [item(event) for item in runs]
        target = type_of(value)
        key = (type(value), value)
        found = False
        pending = None
        for candidate in candidates:
            candidate, message = cast_to(candidate, target)
            pending = pending or message
            found = found or (type(candidate), candidate) == key
        result = found is not negated
        if pending is not None:
            raise _fail(node, CAST, pending, result)
        return result

    return Compiled(in_, BOOL)


def _in_constants(node: In, operand: Compiled, values: list[object]) -> Compiled:
    """IN over literals: per target type, the cast set and its first cast error, precomputed.

    Evaluation then costs one set lookup while answering exactly what casting every
    element at run time would.
    """
    run = operand.run
    negated = node.negated
    tables: dict[str, tuple[frozenset[tuple[type, object]], str | None]] = {}
    for target in (BOOL, INT, STR):
        keys: set[tuple[type, object]] = set()
        first_error: str | None = None
        for item in values:
            candidate, message = cast_to(item, target)
            first_error = first_error or message
            # True == 1 in Python: key by (type, value) so Booleans and Integers stay apart.
            keys.add((type(candidate), candidate))
        tables[target] = (frozenset(keys), first_error)

    def in_constants(event: Event) -> object:
        value = run(event)
        keys, message = tables[type_of(value)]
        result = ((type(value), value) in keys) is not negated
        if message is not None:
            raise _fail(node, CAST, message, result)
        return result

    return Compiled(in_constants, BOOL)


# -- functions ---------------------------------------------------------------------------


def _call(node: Call) -> Compiled:
    args = [compile_node(arg) for arg in node.args]
    function = fn.resolve(node.name, len(args))
    if function is None:
        message = f"no function {node.name} taking {len(args)} argument(s)"
        arg_runs = tuple(arg.run for arg in args)

        def missing(event: Event) -> object:
            # The arguments are evaluated first, as for any call: their errors come first.
            for arg_run in arg_runs:
                arg_run(event)
            raise _fail(node, MISSING_FUNCTION, message, False)

        return Compiled(missing, BOOL)

    impl = function.impl
    if function.reads_event:
        return _event_call(node, function, args)
    runs = tuple(arg.run for arg in args)
    types = tuple(function.param_type(index) for index in range(len(args)))
    casters = tuple(_caster(kind) for kind in types)
    pairs = tuple(zip(runs, casters, strict=True))
    # Per argument: the Python type that needs no cast (None: any value is fine).
    wanted = tuple({INT: int, BOOL: bool, STR: str}.get(kind) for kind in types)
    steps = tuple(zip(runs, wanted, casters, strict=True))

    if len(pairs) == 1:
        ((arg_run, arg_cast),) = pairs

        def call1(event: Event) -> object:
            value, cast_error = arg_cast(arg_run(event))
            try:
                result = impl(value)
            except fn.FunctionError as error:
                kind, message = (CAST, cast_error) if cast_error else (error.kind, error.message)
                raise _fail(node, kind, message, error.value) from None
            if cast_error is not None:
                raise _fail(node, CAST, cast_error, result)
            return result

        return _fold(Compiled(call1, function.returns), *args)

    def call(event: Event) -> object:
        values = []
        cast_error = None
        for run, want, caster in steps:
            value = run(event)
            if want is not None and type(value) is not want:
                value, message = caster(value)
                if message is not None and cast_error is None:
                    cast_error = message
            values.append(value)
        try:
            result = impl(*values)
        except fn.FunctionError as error:
            if cast_error is not None:
                raise _fail(node, CAST, cast_error, error.value) from None
            raise _fail(node, error.kind, error.message, error.value) from None
        if cast_error is not None:
            raise _fail(node, CAST, cast_error, result)
        return result

    return _fold(Compiled(call, function.returns), *args)


def _event_call(node: Call, function: fn.Function, args: list[Compiled]) -> Compiled:
    """A function of the event itself (an opsbus extension such as CONFORMS): it is
    handed the event, then its arguments uncast; never folded."""
    impl = function.impl
    runs = tuple(arg.run for arg in args)

    def call(event: Event) -> object:
        try:
            return impl(event, *(run(event) for run in runs))
        except fn.FunctionError as error:
            raise _fail(node, error.kind, error.message, error.value) from None

    return Compiled(call, function.returns)


def _caster(kind: str) -> Callable[[object], tuple[object, str | None]]:
    if kind == INT:
        return cast_int
    if kind == BOOL:
        return cast_bool
    if kind == STR:
        return lambda value: (cast_str(value), None)
    return lambda value: (value, None)


_COMPILERS: Final[dict[type, Callable[[Any], Compiled]]] = {
    Literal: _literal,
    Attribute: _attribute,
    DataPath: _data_path,
    Exists: _exists,
    Unary: _unary,
    Binary: _binary,
    Logic: _logic,
    Like: _like,
    In: _in,
    Call: _call,
}
