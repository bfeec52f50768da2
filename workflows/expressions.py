"""Guard expressions (``when:``) of process definitions.

A small, safe language over a case's fields (definitions.md, "Expressions"). The
source is parsed once with ``ast.parse(mode="eval")``, every node is checked
against a strict whitelist, and the result is an immutable tree of closures.
Nothing is ever handed to ``eval``, ``exec`` or ``compile``.

Semantics in short: a missing field is ``null``; arithmetic with ``null`` gives
``null``; ordering comparisons with ``null`` are false, ``== null`` works; numbers
are ``int`` or ``Decimal`` (never float) and ``/`` is exact-ish Decimal division.
"""
from __future__ import annotations

import ast
import datetime as _dt
import decimal
import difflib
import math
import operator
import time
import warnings
from collections import namedtuple
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping

__all__ = ["ExpressionError", "EvaluationError", "Expression", "compile_expression"]

MAX_SOURCE = 500            # characters
MAX_NESTING = 20            # bracket depth, checked before parsing
MAX_TREE_DEPTH = 100        # AST depth (e.g. "- - - - x"); keeps our recursion shallow
MAX_LITERAL = 10**15        # integer literals
MAX_MAGNITUDE = 10**30      # arithmetic results
MAX_ITEMS = 10_000          # size of text/lists built by + and * (nested items count whole)
EVAL_BUDGET = 0.05          # seconds one evaluation may take (a guard is refused past it)

# Refusals of the budgets, bilingual (Chinese first) like every message a person reads.
_TOO_BIG = "结果过大（最多 10,000 项或字符）/ result is longer than 10,000 items/characters"
_TOO_SLOW = "条件计算超时（上限 50 毫秒）/ the condition took too long to evaluate (limit 50 ms)"

# Our own context: results never depend on the thread's current decimal context.
_CTX = decimal.Context(prec=50, rounding=decimal.ROUND_HALF_EVEN,
                       traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow])
_LITERALS = {"true": True, "false": False, "null": None}
_ATTRIBUTES = {"actor": ("roles",), "case": ("org_unit", "created_at")}  # nothing else (definitions.md)
_SYMBOLS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Mod: "%", ast.Pow: "**",
            ast.FloorDiv: "//", ast.MatMult: "@", ast.LShift: "<<", ast.RShift: ">>",
            ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^"}
_REJECTED = {  # node type -> message; anything else gets a generic one
    "Lambda": "lambda", "ListComp": "comprehensions", "SetComp": "comprehensions",
    "DictComp": "comprehensions", "GeneratorExp": "comprehensions", "JoinedStr": "f-strings",
    "Subscript": "indexing and slicing", "NamedExpr": "':='", "Starred": "starred arguments",
    "Dict": "dict literals", "Set": "set literals",
}


class ExpressionError(ValueError):
    """Raised when an expression does not parse, names something unknown, or breaks a limit."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset  # 0-based character offset into the source, best effort


class EvaluationError(ExpressionError):
    """Raised at run time (division by zero, wrong types such as text < number)."""


# What one evaluation reads: the case data, the actor, the case row, today; and when it must stop.
_Env = namedtuple("_Env", "data actor case today deadline")


Node = Callable[[_Env], Any]  # a compiled node: env -> value

@dataclass(frozen=True, eq=False)
class Expression:
    """A compiled guard expression. Build it with :func:`compile_expression`."""

    source: str
    names: frozenset  # the case fields the expression reads
    _run: Node = field(repr=False)

    def evaluate(self, data: Mapping[str, Any], *, actor: Mapping | None = None,
                 case: Mapping | None = None, today: _dt.date | None = None,
                 budget: float = EVAL_BUDGET) -> Any:
        """Evaluate over ``data``; raises :class:`EvaluationError` on run-time errors.

        ``budget``: seconds the evaluation may take; past it, it stops with an
        :class:`EvaluationError` (the check-time cost model keeps every single step small,
        so the budget is checked between steps and a guard can never hang a worker).
        """
        return self._run(_Env(data if data is not None else {}, actor, case, today,
                              time.perf_counter() + budget))

    def holds(self, data: Mapping[str, Any], *, actor: Mapping | None = None,
              case: Mapping | None = None, today: _dt.date | None = None,
              budget: float = EVAL_BUDGET) -> bool:
        """Truthiness of :meth:`evaluate`; ``null`` counts as false."""
        return bool(self.evaluate(data, actor=actor, case=case, today=today, budget=budget))


# ---------------------------------------------------------------- run-time helpers

_KINDS = ((type(None), "null"), (bool, "boolean"), ((int, Decimal), "number"), (str, "text"),
          (_dt.datetime, "datetime"), (_dt.date, "date"), (list, "list"))  # order matters


def _kind(v: Any) -> str:
    """The language's name for a value's type, for messages."""
    return next((name for t, name in _KINDS if isinstance(v, t)), type(v).__name__)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, Decimal)) and not isinstance(v, bool)


def _coerce(v: Any) -> Any:
    """Bring a value from the outside into the language: float -> Decimal, sequences -> list."""
    if isinstance(v, (float, Decimal)):
        if not (math.isfinite(v) if isinstance(v, float) else v.is_finite()):
            raise EvaluationError(f"{v} is not a finite number")
        return Decimal(str(v)) if isinstance(v, float) else v
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_coerce(x) for x in v]
    return v


def _size(v: Any, limit: int = MAX_ITEMS) -> int:
    """How much a value weighs: characters of text, and a list's items counted whole (a list
    of lists weighs all their items, however many times one list is repeated in it). Stops
    counting once past ``limit``, so weighing costs no more than the limit."""
    if isinstance(v, str):
        return max(len(v), 1)
    if not isinstance(v, list):
        return 1
    total = 0
    for item in v:
        total += _size(item, limit - total) if isinstance(item, (list, str)) else 1
        if total > limit:
            break
    return max(total, 1)


def _tick(env: _Env, off: int) -> None:
    """Stop an evaluation that has run past its time budget."""
    if time.perf_counter() > env.deadline:
        raise EvaluationError(_TOO_SLOW, off)


def _big(v: Any) -> Any:
    """Refuse arithmetic results that are absurdly large (they are mistakes or attacks)."""
    if abs(v) > MAX_MAGNITUDE:
        raise EvaluationError("result is too large (limit 10**30)")
    return v


def _need_numbers(sym: str, a: Any, b: Any) -> bool:
    """Check both are numbers; returns True when both are plain ints."""
    if not (_is_num(a) and _is_num(b)):
        raise EvaluationError(f"cannot use '{sym}' on {_kind(a)} and {_kind(b)}")
    return isinstance(a, int) and isinstance(b, int)


def _arith(sym: str, a: Any, b: Any) -> Any:
    """``a sym b`` for + - * / % (neither operand is null)."""
    if sym == "+" and type(a) is type(b) and isinstance(a, (str, list)):
        if _size(a) + _size(b) > MAX_ITEMS:
            raise EvaluationError(_TOO_BIG)
        return a + b
    for seq, n in ((a, b), (b, a)):
        if sym == "*" and isinstance(seq, (str, list)) and _is_num(n) and isinstance(n, int):
            if n > 0 and _size(seq) * n > MAX_ITEMS:  # checked before building anything
                raise EvaluationError(_TOO_BIG)
            return seq * n
    ints = _need_numbers(sym, a, b)
    if sym in "/%" and b == 0:
        raise EvaluationError("division by zero")
    if ints and sym != "/":
        return _big({"+": operator.add, "-": operator.sub, "*": operator.mul, "%": operator.mod}[sym](a, b))
    x, y = Decimal(a), Decimal(b)
    if sym == "%":
        r = _CTX.remainder(x, y)
        return _CTX.add(r, y) if r and (r < 0) != (y < 0) else r  # floor semantics, like ints
    method = {"+": _CTX.add, "-": _CTX.subtract, "*": _CTX.multiply, "/": _CTX.divide}[sym]
    return _big(method(x, y))


def _negate(a: Any) -> Any:
    _need_numbers("-", a, 0)
    return -a if isinstance(a, int) else _CTX.minus(a)


def _plus(a: Any) -> Any:
    _need_numbers("+", a, 0)
    return a


def _day(value: Any) -> Any:
    return value.date() if isinstance(value, _dt.datetime) else value


def _is_null(node: ast.AST) -> bool:
    """The literal null (``null``, ``None``) as written in the expression."""
    return (isinstance(node, ast.Constant) and node.value is None) or (
        isinstance(node, ast.Name) and _LITERALS.get(node.id, 0) is None)


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):  # true is not 1 here
        return False
    return a == b


def _contains(item: Any, container: Any) -> bool:
    if container is None:
        return False
    if isinstance(container, str):
        if not isinstance(item, str):
            raise EvaluationError(f"cannot look for {_kind(item)} in text")
        return item in container
    if isinstance(container, list):
        return any(_equal(item, x) for x in container)
    raise EvaluationError(f"'in' needs a list or text on the right, not {_kind(container)}")


def _ordering(sym: str, op: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def compare(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return False
        ka, kb = _kind(a), _kind(b)
        if {ka, kb} == {"date", "datetime"}:  # deadline < today(): compare calendar days
            a, b, ka, kb = _day(a), _day(b), "date", "date"
        if ka != kb or ka not in ("number", "text", "date", "datetime"):
            raise EvaluationError(f"cannot compare {ka} and {kb} with '{sym}'")
        return op(a, b)
    return compare


_COMPARE = {
    ast.Eq: _equal, ast.NotEq: lambda a, b: not _equal(a, b),
    ast.In: _contains, ast.NotIn: lambda a, b: not _contains(a, b),
    ast.Lt: _ordering("<", operator.lt), ast.LtE: _ordering("<=", operator.le),
    ast.Gt: _ordering(">", operator.gt), ast.GtE: _ordering(">=", operator.ge),
}


# ---------------------------------------------------------------- functions

def _len(env: _Env, a: list) -> Any:
    if a[0] is not None and not isinstance(a[0], (str, list)):
        raise EvaluationError(f"len() needs text or a list, not {_kind(a[0])}")
    return None if a[0] is None else len(a[0])


def _abs(env: _Env, a: list) -> Any:
    x = None if a[0] is None else _plus(a[0])
    return x if x is None or x >= 0 else _negate(x)


def _round(env: _Env, a: list) -> Any:
    x, n = a[0], (a[1] if len(a) > 1 else 0)
    if x is None or n is None:
        return None
    if not _is_num(x) or not isinstance(n, int) or isinstance(n, bool) or not -15 <= n <= 20:
        raise EvaluationError("round() needs a number and a whole number of places (-15..20)")
    q = Decimal(x).quantize(Decimal(1).scaleb(-n, _CTX), decimal.ROUND_HALF_UP, _CTX)
    return int(q) if len(a) == 1 else q


def _extreme(name: str, pick: Callable[[Any, Any], bool]) -> Callable[[_Env, list], Any]:
    def impl(env: _Env, a: list) -> Any:
        if len(a) == 1 and not isinstance(a[0], (list, type(None))):
            raise EvaluationError(f"{name}() of one value needs a list")
        items = (a[0] or []) if len(a) == 1 else a
        if not items or any(v is None for v in items):
            return None  # null in, null out (like arithmetic)
        best = items[0]
        for v in items[1:]:
            best = v if pick(v, best) else best
        return best
    return impl


def _as_date(v: Any) -> _dt.date:
    if isinstance(v, _dt.date):
        return v
    if isinstance(v, str):
        for parse in (_dt.date.fromisoformat, _dt.datetime.fromisoformat):
            try:
                return parse(v)
            except ValueError:
                pass
        raise EvaluationError(f"{v[:40]!r} is not an ISO date")
    raise EvaluationError(f"days_between() needs dates, not {_kind(v)}")


def _days_between(env: _Env, a: list) -> Any:
    if a[0] is None or a[1] is None:
        return None
    x, y = _as_date(a[0]), _as_date(a[1])
    both_dt = isinstance(x, _dt.datetime) and isinstance(y, _dt.datetime)
    if not both_dt or (x.tzinfo is None) != (y.tzinfo is None):  # compare calendar days then
        x = x.date() if isinstance(x, _dt.datetime) else x
        y = y.date() if isinstance(y, _dt.datetime) else y
    return (y - x).days


# name -> (fewest args, most args, implementation)
_FUNCTIONS = {
    "len": (1, 1, _len), "abs": (1, 1, _abs), "round": (1, 2, _round),
    "min": (1, 50, _extreme("min", _ordering("min()", operator.lt))),
    "max": (1, 50, _extreme("max", _ordering("max()", operator.gt))),
    "today": (0, 0, lambda env, a: env.today if env.today is not None else _dt.date.today()),
    "days_between": (2, 2, _days_between),
}


def _guarded(off: int, fn: Callable, *args: Any) -> Any:
    """Run one operation, turning every failure into an EvaluationError at ``off``."""
    try:
        return fn(*args)
    except EvaluationError as e:
        raise EvaluationError(e.message, e.offset or off) from None
    except decimal.DecimalException:
        raise EvaluationError("arithmetic error (number out of range)", off) from None
    except (TypeError, ValueError, OverflowError) as e:
        raise EvaluationError(f"cannot evaluate: {e}", off) from None


# ---------------------------------------------------------------- compiler

class _Compiler:
    """Walks the AST with a whitelist and returns a closure per node."""

    def __init__(self, source: str, lead: int, fields: frozenset) -> None:
        self.source, self.lead, self.fields, self.names = source, lead, fields, set()

    def offset(self, node: ast.AST) -> int:
        """0-based character offset (AST columns are UTF-8 byte offsets)."""
        lines = self.source.split("\n")
        row = min(max(getattr(node, "lineno", 1), 1), len(lines)) - 1
        col = lines[row].encode("utf-8")[: getattr(node, "col_offset", 0)]
        return self.lead + sum(len(x) + 1 for x in lines[:row]) + len(col.decode("utf-8", "ignore"))

    def fail(self, message: str, node: ast.AST) -> None:
        raise ExpressionError(message, self.offset(node))

    def build(self, node: ast.AST, depth: int = 0) -> Node:
        if depth > MAX_TREE_DEPTH:
            self.fail("expression is nested too deeply", node)
        handler = getattr(self, "n_" + type(node).__name__, None)
        if handler is None:
            name = type(node).__name__
            self.fail(f"{_REJECTED.get(name, name)} not allowed in expressions", node)
        return handler(node, depth + 1)

    def n_Expression(self, node: ast.Expression, d: int) -> Node:
        return self.build(node.body, d)

    def n_Constant(self, node: ast.Constant, d: int) -> Node:
        v = node.value
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_LITERAL:
            self.fail("integer literal is too large (limit 10**15)", node)
        if isinstance(v, float):
            text = ast.get_source_segment(self.source, node) or repr(v)
            try:
                v = Decimal(text.replace("_", ""))
            except decimal.InvalidOperation:
                v = Decimal(repr(v))
            if abs(v) > MAX_LITERAL:
                self.fail("number literal is too large (limit 10**15)", node)
        elif not (v is None or isinstance(v, (bool, int, str))):
            self.fail(f"{type(v).__name__} literals are not allowed", node)
        return lambda env: v

    def suggest(self, name: str, candidates: Iterable[str]) -> str:
        close = difflib.get_close_matches(name, sorted(candidates), n=1)
        return f" (did you mean '{close[0]}'?)" if close else ""

    def n_Name(self, node: ast.Name, d: int) -> Node:
        name = node.id
        if name in _LITERALS:
            value = _LITERALS[name]
            return lambda env: value
        if name in self.fields:
            self.names.add(name)
            off = self.offset(node)
            return lambda env: _guarded(off, _coerce, env.data.get(name))
        if name in _ATTRIBUTES:
            allowed = " or ".join(f"{name}.{a}" for a in _ATTRIBUTES[name])
            self.fail(f"'{name}' cannot be used alone; use {allowed}", node)
        if name in _FUNCTIONS:
            self.fail(f"'{name}' is a function; call it as {name}(...)", node)
        hint = self.suggest(name, [*self.fields, *_LITERALS, *_ATTRIBUTES])
        self.fail(f"unknown name '{name}'{hint}", node)

    def n_Attribute(self, node: ast.Attribute, d: int) -> Node:
        base, attr = node.value, node.attr
        if not (isinstance(base, ast.Name) and base.id in _ATTRIBUTES):
            self.fail("attribute access is only allowed on actor and case", node)
        kind = base.id
        if attr not in _ATTRIBUTES[kind]:
            hint = self.suggest(attr, _ATTRIBUTES[kind])
            self.fail(f"unknown attribute '{kind}.{attr}'{hint}", node)
        off = self.offset(node)

        def read(env: _Env) -> Any:
            owner = env.actor if kind == "actor" else env.case
            return None if owner is None else _guarded(off, _coerce, owner.get(attr))
        return read

    def n_BinOp(self, node: ast.BinOp, d: int) -> Node:
        op = type(node.op)
        if op is ast.Pow:
            self.fail("the power operator ** is not allowed", node)
        sym = _SYMBOLS.get(op, op.__name__)
        if sym not in ("+", "-", "*", "/", "%"):
            self.fail(f"operator '{sym}' is not allowed", node)
        left, right, off = self.build(node.left, d), self.build(node.right, d), self.offset(node)

        def run(env: _Env) -> Any:
            a, b = left(env), right(env)
            _tick(env, off)
            return None if a is None or b is None else _guarded(off, _arith, sym, a, b)
        return run

    def n_UnaryOp(self, node: ast.UnaryOp, d: int) -> Node:
        inner, off, op = self.build(node.operand, d), self.offset(node), type(node.op)
        if op is ast.Not:
            return lambda env: not _guarded(off, bool, inner(env))
        if op not in (ast.USub, ast.UAdd):
            self.fail("operator '~' is not allowed", node)
        fn = _negate if op is ast.USub else _plus

        def run(env: _Env) -> Any:
            v = inner(env)
            return None if v is None else _guarded(off, fn, v)
        return run

    def n_BoolOp(self, node: ast.BoolOp, d: int) -> Node:
        parts, is_and = [self.build(v, d) for v in node.values], isinstance(node.op, ast.And)
        off = self.offset(node)

        def run(env: _Env) -> Any:
            value = None
            for part in parts:  # Python semantics: short-circuit, return the deciding operand
                value = part(env)
                _tick(env, off)
                if bool(value) != is_and:
                    return value
            return value
        return run

    def n_Compare(self, node: ast.Compare, d: int) -> Node:
        first, steps = self.build(node.left, d), []
        left = node.left
        for op, right in zip(node.ops, node.comparators):
            if type(op) in (ast.Is, ast.IsNot):
                self.fail("'is' is not allowed; use == null or != null", node)
            # "Comparing null is false": a missing value makes == and != false too, unless
            # the comparison is with the literal null (``x == null``, ``x != null``).
            strict = type(op) in (ast.Eq, ast.NotEq) and not (_is_null(left) or _is_null(right))
            steps.append((_COMPARE[type(op)], self.build(right, d), self.offset(right), strict))
            left = right

        def run(env: _Env) -> bool:
            a = first(env)
            for fn, right, off, strict in steps:  # chained: a < b < c means a < b and b < c
                b = right(env)
                _tick(env, off)
                if strict and (a is None or b is None):
                    return False
                if not _guarded(off, fn, a, b):
                    return False
                a = b
            return True
        return run

    def n_IfExp(self, node: ast.IfExp, d: int) -> Node:
        test, yes, no = self.build(node.test, d), self.build(node.body, d), self.build(node.orelse, d)
        return lambda env: yes(env) if test(env) else no(env)

    def n_List(self, node: ast.List | ast.Tuple, d: int) -> Node:
        items, off = [self.build(e, d) for e in node.elts], self.offset(node)

        def run(env: _Env) -> list:
            _tick(env, off)
            return [item(env) for item in items]
        return run

    n_Tuple = n_List

    def n_Call(self, node: ast.Call, d: int) -> Node:
        f = node.func
        if not isinstance(f, ast.Name):
            self.fail("only the functions " + ", ".join(_FUNCTIONS) + " can be called", node)
        if f.id not in _FUNCTIONS:
            hint = self.suggest(f.id, _FUNCTIONS)
            self.fail(f"'{f.id}' is a field, not a function" if f.id in self.fields
                      else f"unknown function '{f.id}'{hint}", node)
        if node.keywords:
            self.fail("keyword arguments are not allowed", node)
        if any(isinstance(a, ast.Starred) for a in node.args):
            self.fail("starred arguments are not allowed", node)
        low, high, impl = _FUNCTIONS[f.id]
        if not low <= len(node.args) <= high:
            self.fail(f"{f.id}() takes {low if low == high else f'{low} to {high}'} argument(s), "
                      f"got {len(node.args)}", node)
        args, off = [self.build(a, d) for a in node.args], self.offset(node)

        def run(env: _Env) -> Any:
            values = [a(env) for a in args]
            _tick(env, off)
            return _guarded(off, impl, env, values)
        return run


# ---------------------------------------------------------------- cost model (check time)

class _Cost:
    """What an expression can build, judged before it ever runs.

    Every node gets a *shape*: whether it is surely a sequence (text or list) and the least
    size it has (literals and what is built from them; a case field counts as one item,
    since its real size is only known at run time, where :func:`_size` weighs it). A
    definition is refused when a construction grows beyond :data:`MAX_ITEMS` whatever the
    data (``[[1]*10000]*10000``, ``'a' * 100000000``), or when a nested construction (a list
    of lists, or something already repeated) is repeated by a count that comes from the
    case's data (``[[1]*n]*n`` grows as n squared). Flat repetition by the data (``'-' * n``)
    is weighed when it runs and refused past the budget. Together with the
    limits on length, nesting and literals, every single step of an evaluation stays small,
    and the evaluation budget (:data:`EVAL_BUDGET`) bounds how many steps there are.
    """

    def __init__(self, compiler: "_Compiler") -> None:
        self.compiler = compiler

    def fail(self, node: ast.AST, size: int | None = None) -> None:
        if size is None:
            self.compiler.fail("嵌套构造的值只能按常数重复（最多 10,000 项）/ a nested list may be repeated "
                               "only by a constant count, not by a value of the case (limit 10,000 items)", node)
        self.compiler.fail(f"构造的值过大：{size:,} 项（上限 10,000）/ "
                           f"this builds {size:,} items or characters (limit 10,000)", node)

    def count(self, node: ast.AST) -> int | None:
        """The largest whole number a constant expression can be (None: it depends on the data)."""
        if isinstance(node, ast.Constant):
            v = node.value
            return v if isinstance(v, int) and not isinstance(v, bool) else None
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            v = self.count(node.operand)
            return None if v is None else (-v if isinstance(node.op, ast.USub) else v)
        if isinstance(node, ast.IfExp):
            a, b = self.count(node.body), self.count(node.orelse)
            return None if a is None or b is None else max(a, b)
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub, ast.Mult, ast.Mod)):
            a, b = self.count(node.left), self.count(node.right)
            if a is None or b is None or (isinstance(node.op, ast.Mod) and b == 0):
                return None
            ops = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Mod: operator.mod}
            return ops[type(node.op)](a, b)   # operands are at most 10**15: no blow-up here
        return None

    def shape(self, node: ast.AST) -> tuple[bool, int, bool]:
        """(surely a sequence, least size, nested: a list holding sequences or built by
        repetition) of ``node``; refuses growth beyond the budget."""
        if isinstance(node, ast.Expression):
            return self.shape(node.body)
        if isinstance(node, ast.Constant):
            return (True, max(len(node.value), 1), False) if isinstance(node.value, str) else (False, 1, False)
        if isinstance(node, (ast.List, ast.Tuple)):
            shapes = [self.shape(e) for e in node.elts]
            total = sum(size for _, size, _ in shapes)
            if total > MAX_ITEMS:
                self.fail(node, total)
            return True, max(total, 1), any(seq for seq, _, _ in shapes)
        if isinstance(node, ast.BinOp):
            (lseq, lsize, lnest), (rseq, rsize, rnest) = self.shape(node.left), self.shape(node.right)
            if isinstance(node.op, ast.Add) and (lseq or rseq):
                if lsize + rsize > MAX_ITEMS:
                    self.fail(node, lsize + rsize)
                return True, lsize + rsize, lnest or rnest
            if isinstance(node.op, ast.Mult) and (lseq or rseq):
                size, nested, times = (lsize, lnest, node.right) if lseq else (rsize, rnest, node.left)
                n = self.count(times)
                if n is None:   # repeated by the case's data: bounded at run time, unless nested
                    if nested:
                        self.fail(node)
                    return True, 1, True
                if size * max(n, 0) > MAX_ITEMS:
                    self.fail(node, size * n)
                return True, max(size * max(n, 0), 1), nested
            return False, 1, False
        if isinstance(node, ast.BoolOp):
            shapes = [self.shape(v) for v in node.values]
            return (all(seq for seq, _, _ in shapes), min(size for _, size, _ in shapes),
                    any(nested for _, _, nested in shapes))
        if isinstance(node, ast.IfExp):
            self.shape(node.test)
            (a_seq, a_size, a_nest), (b_seq, b_size, b_nest) = self.shape(node.body), self.shape(node.orelse)
            return a_seq and b_seq, min(a_size, b_size), a_nest or b_nest
        for child in ast.iter_child_nodes(node):   # comparisons, calls, unary operators
            self.shape(child)
        return False, 1, False
        if isinstance(node, ast.BoolOp):
            shapes = [self.shape(v) for v in node.values]
            return all(seq for seq, _ in shapes), min(size for _, size in shapes)
        if isinstance(node, ast.IfExp):
            self.shape(node.test)
            (a_seq, a_size), (b_seq, b_size) = self.shape(node.body), self.shape(node.orelse)
            return a_seq and b_seq, min(a_size, b_size)
        for child in ast.iter_child_nodes(node):   # comparisons, calls, unary operators
            self.shape(child)
        return False, 1


def _check_nesting(source: str) -> None:
    """Reject deep bracket nesting before the parser ever sees it (strings are skipped)."""
    depth, i, n = 0, 0, len(source)
    while i < n:
        ch = source[i]
        if ch in "'\"":
            quote = source[i:i + 3] if source[i:i + 3] in ("'''", '"""') else ch
            i += len(quote)
            while i < n and not source.startswith(quote, i):
                i += 2 if source[i] == "\\" else 1
            i += len(quote)
            continue
        if ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise ExpressionError(f"expression is nested too deeply (more than {MAX_NESTING} levels)", i)
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        i += 1


def compile_expression(source: str, fields: Iterable[str], *, cost_check: bool = True) -> Expression:
    """Parse and check ``source`` once; the result can be evaluated many times.

    Raises :class:`ExpressionError` for syntax errors, unknown names (with a
    "did you mean" hint), anything outside the language, and broken limits, including
    the cost model (:class:`_Cost`: what could build a value beyond the budget).
    ``cost_check=False`` skips the cost model only (definitions stored before it existed
    still run; the evaluation budget then holds them).
    """
    if not isinstance(source, str):
        raise ExpressionError("an expression must be text")
    if len(source) > MAX_SOURCE:
        raise ExpressionError(f"expression is too long ({len(source)} characters, limit {MAX_SOURCE})",
                              MAX_SOURCE)
    body = source.lstrip()  # eval mode rejects leading indentation
    lead = len(source) - len(body)
    if not body.strip():
        raise ExpressionError("expression is empty")
    _check_nesting(source)
    try:
        with warnings.catch_warnings():  # e.g. invalid escape sequences; never let them escalate
            warnings.simplefilter("ignore")
            tree = ast.parse(body, mode="eval")
    except SyntaxError as e:
        lines = body.split("\n")
        row = min(max(e.lineno or 1, 1), len(lines)) - 1
        at = e.offset - 1 if e.offset and e.offset >= 1 else len(lines[row])  # 0 means "at the end"
        col = sum(len(x) + 1 for x in lines[:row]) + at
        raise ExpressionError(f"syntax error: {e.msg}", min(lead + col, len(source))) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("expression could not be parsed") from None
    compiler = _Compiler(body, lead, frozenset([fields] if isinstance(fields, str) else fields))
    for node in ast.walk(tree):  # iterative, so safe before the depth check
        name = getattr(node, "id", None) or getattr(node, "attr", None) or getattr(node, "arg", None)
        if isinstance(name, str) and "__" in name:
            segment = ast.get_source_segment(body, node) or "" if isinstance(node, ast.Attribute) else ""
            raise ExpressionError(f"'{name}': names with double underscores are not allowed",
                                  compiler.offset(node) + max(segment.rfind(name), 0))
    try:
        run = compiler.build(tree)
        if cost_check:
            _Cost(compiler).shape(tree)
    except RecursionError:
        raise ExpressionError("expression is nested too deeply") from None
    return Expression(source, frozenset(compiler.names), run)
