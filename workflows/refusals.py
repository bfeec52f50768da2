"""Why an action is refused, in words a cadre understands (definitions.md, "Why an action is refused").

A transition may carry ``message: {zh, en}``; without one, its guard is put into words
built from the field labels (``批准金额须不超过 800`` / ``Approved amount must be at most
800``), never shown as the expression itself. The expression stays available to the
API (``details.expression``) for the people who wrote it.
"""
from __future__ import annotations

import ast
from decimal import Decimal
from typing import Any

from .spec import Label, ProcessSpec, TransitionSpec

#: comparison -> (Chinese, English), read as "<left> must be <op> <right>"
_COMPARE = {
    ast.Lt: ("须小于", "must be less than"),
    ast.LtE: ("须不超过", "must be at most"),
    ast.Gt: ("须大于", "must be more than"),
    ast.GtE: ("须不少于", "must be at least"),
    ast.Eq: ("须为", "must be"),
    ast.NotEq: ("不能为", "must not be"),
    ast.In: ("须为以下之一：", "must be one of"),
    ast.NotIn: ("不能为以下之一：", "must not be one of"),
}
_WHEN = {**_COMPARE, ast.Lt: ("须早于", "must be before"), ast.LtE: ("须不晚于", "must be on or before"),
         ast.Gt: ("须晚于", "must be after"), ast.GtE: ("须不早于", "must be on or after")}
_ARITH = {ast.Add: "+", ast.Sub: "−", ast.Mult: "×", ast.Div: "÷", ast.Mod: "%"}
_CASE = {"org_unit": Label("案件所属单位", "the case's unit"),
         "created_at": Label("立案日期", "the date the case was opened")}


def refusal(transition: TransitionSpec, spec: ProcessSpec, roles: Any = None) -> Label:
    """The text a person reads when ``transition``'s guard does not hold."""
    if transition.message is not None:
        return transition.message
    if transition.when is None:
        return Label("条件不满足", "the conditions are not met")
    return explain(transition.when.source, spec, roles)


def explain(source: str, spec: ProcessSpec, roles: Any = None) -> Label:
    """``source`` (a guard) as a sentence in both languages, from the field labels."""
    try:
        tree = ast.parse(source.strip(), mode="eval").body
        return Label(_Words(spec, "zh", roles).condition(tree), _Words(spec, "en", roles).condition(tree))
    except (SyntaxError, _Unsayable, RecursionError):
        names = _field_labels(source, spec)
        if names:
            return Label(f"「{'、'.join(n.zh for n in names)}」不符合办理条件",
                         f"{', '.join(n.en for n in names)}: the conditions are not met")
        return Label("条件不满足", "the conditions are not met")


def _literal(node: ast.AST) -> ast.AST:
    """``true``, ``false`` and ``null`` (names in the language) as the constants they are."""
    if isinstance(node, ast.Name) and node.id in _NAMED:
        return ast.Constant(_NAMED[node.id])
    return node


_NAMED = {"true": True, "True": True, "false": False, "False": False, "null": None, "None": None}


class _Unsayable(Exception):
    """A construct with no plain wording: the caller falls back to naming the fields."""


def _field_labels(source: str, spec: ProcessSpec) -> list[Label]:
    try:
        names = {n.id for n in ast.walk(ast.parse(source.strip(), mode="eval")) if isinstance(n, ast.Name)}
    except SyntaxError:
        return []
    return [spec.fields[n].label for n in spec.fields if n in names]


class _Words:
    def __init__(self, spec: ProcessSpec, locale: str, roles: Any) -> None:
        self.spec, self.zh, self.roles = spec, locale == "zh", roles

    def _pick(self, zh: str, en: str) -> str:
        return zh if self.zh else en

    # -- conditions ------------------------------------------------------------------
    def condition(self, node: ast.AST) -> str:
        if isinstance(node, ast.BoolOp):
            parts = [self._nested(v) for v in node.values]
            if isinstance(node.op, ast.And):
                return self._pick("，且".join(parts), ", and ".join(parts))
            return self._pick("，或".join(parts), ", or ".join(parts))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            inner = node.operand
            if isinstance(inner, ast.Name) and self._field_type(inner.id) == "boolean":
                return self._pick(f"「{self.term(inner)}」不能勾选", f"{self.term(inner)} must not be ticked")
            return self._pick(f"以下条件不能成立：{self.condition(inner)}", f"this must not hold: {self.condition(inner)}")
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            return self.comparison(node.left, node.ops[0], node.comparators[0])
        if isinstance(node, ast.Compare):
            pairs = zip([node.left, *node.comparators], node.ops, node.comparators)
            return self._pick("，且".join(self.comparison(a, op, b) for a, op, b in pairs),
                              ", and ".join(self.comparison(a, op, b) for a, op, b in pairs))
        if isinstance(node, ast.Name) and node.id in self.spec.fields:
            if self._field_type(node.id) == "boolean":
                return self._pick(f"须勾选「{self.term(node)}」", f"{self.term(node)} must be ticked")
            return self._pick(f"须填写「{self.term(node)}」", f"{self.term(node)} must be filled in")
        node = _literal(node)
        if isinstance(node, ast.Constant) and node.value is False:
            return self._pick("此操作现在不可用", "this action is not available now")
        raise _Unsayable

    def _nested(self, node: ast.AST) -> str:
        """A part of an and/or, bracketed when it is itself one."""
        text = self.condition(node)
        return self._pick(f"（{text}）", f"({text})") if isinstance(node, ast.BoolOp) else text

    def comparison(self, left: ast.AST, op: ast.cmpop, right: ast.AST) -> str:
        left, right = _literal(left), _literal(right)
        if isinstance(op, (ast.In, ast.NotIn)) and isinstance(right, ast.Name) \
                and self._field_type(right.id) == "multichoice":
            item = self.value(left, right.id)
            if isinstance(op, ast.In):
                return self._pick(f"「{self.term(right)}」须包含{item}", f"{self.term(right)} must include {item}")
            return self._pick(f"「{self.term(right)}」不能包含{item}", f"{self.term(right)} must not include {item}")
        if self._is_roles(right) and isinstance(op, (ast.In, ast.NotIn)):
            role = self.value(left, None)
            if isinstance(op, ast.In):
                return self._pick(f"须由{role}办理", f"only a {role} may do this")
            return self._pick(f"{role}不能办理", f"a {role} may not do this")
        if self._is_null(right) or self._is_null(left):
            subject = left if self._is_null(right) else right
            if isinstance(op, ast.Eq):
                return self._pick(f"「{self.term(subject)}」须为空", f"{self.term(subject)} must be empty")
            if isinstance(op, ast.NotEq):
                return self._pick(f"须填写「{self.term(subject)}」", f"{self.term(subject)} must be filled in")
        field = left.id if isinstance(left, ast.Name) else None
        if field and self._field_type(field) == "boolean" and isinstance(op, (ast.Eq, ast.NotEq)) \
                and isinstance(right, ast.Constant) and isinstance(right.value, bool):
            ticked = right.value == isinstance(op, ast.Eq)
            if ticked:
                return self._pick(f"须勾选「{self.term(left)}」", f"{self.term(left)} must be ticked")
            return self._pick(f"「{self.term(left)}」不能勾选", f"{self.term(left)} must not be ticked")
        zh, en = (_WHEN if self._field_type(field) in ("date", "datetime") else _COMPARE).get(type(op), (None, None))
        if zh is None:
            raise _Unsayable
        value = self.value(right, field)
        if self.zh:  # a number or a date stands apart from the words: 须不超过 800
            return f"{self.term(left)}{zh}{' ' if value[:1].isdigit() else ''}{value}"
        return f"{self.term(left)} {en} {value}"

    # -- terms -----------------------------------------------------------------------
    def term(self, node: ast.AST) -> str:
        """A quantity: a field's label, a sum, a function of fields."""
        if isinstance(node, ast.Name):
            if node.id in self.spec.fields:
                return self.spec.fields[node.id].label.get("zh" if self.zh else "en")
            if node.id in _NAMED:
                return self.value(node, None)
            raise _Unsayable
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id == "case" and node.attr in _CASE:
                return _CASE[node.attr].get("zh" if self.zh else "en")
            if node.value.id == "actor" and node.attr == "roles":
                return self._pick("办理人的角色", "the acting person's roles")
            raise _Unsayable
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH:
            left, right = self._operand(node.left), self._operand(node.right)
            return f"{left} {_ARITH[type(node.op)]} {right}"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return f"−{self._operand(node.operand)}"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            return self.call(node.func.id, node.args)
        if isinstance(node, ast.Constant):
            return self.value(node, None)
        raise _Unsayable

    def _operand(self, node: ast.AST) -> str:
        text = self.term(node)
        return f"({text})" if isinstance(node, ast.BinOp) else text

    def call(self, name: str, args: list[ast.AST]) -> str:
        terms = [self.term(a) for a in args]
        if name == "today" and not args:
            return self._pick("今天", "today")
        if name == "days_between" and len(terms) == 2:
            return self._pick(f"从{terms[0]}到{terms[1]}的天数", f"the days from {terms[0]} to {terms[1]}")
        if name == "len" and len(terms) == 1:
            return self._pick(f"「{terms[0]}」的项数", f"the number of {terms[0]}")
        if name == "abs" and len(terms) == 1:
            return self._pick(f"{terms[0]}的绝对值", f"the absolute value of {terms[0]}")
        if name == "round" and terms:
            return self._pick(f"{terms[0]}（四舍五入）", f"{terms[0]} (rounded)")
        if name in ("min", "max") and terms:
            joined = self._pick("、".join(terms), ", ".join(terms))
            return self._pick(f"{joined}中{'较小' if name == 'min' else '较大'}者",
                              f"the {'smaller' if name == 'min' else 'larger'} of {joined}")
        raise _Unsayable

    def value(self, node: ast.AST, field: str | None) -> str:
        """A literal as a person reads it: a choice's label, a number, 是/否."""
        if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
            return self._pick("、".join(self.value(e, field) for e in node.elts),
                              ", ".join(self.value(e, field) for e in node.elts))
        node = _literal(node)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                return self._pick("是" if v else "否", "yes" if v else "no")
            if v is None:
                return self._pick("空", "empty")
            if isinstance(v, str):
                return self._choice(field, v) if field else self._role_or_text(v)
            if isinstance(v, (int, float, Decimal)):
                return format(v, "f").rstrip("0").rstrip(".") if isinstance(v, float) and "." in str(v) else str(v)
        return self.term(node)

    def _choice(self, field: str, key: str) -> str:
        spec = self.spec.fields.get(field)
        for k, label in (spec.choices if spec else ()):
            if k == key:
                return self._pick(f"「{label.zh}」", f"“{label.en}”")
        return self._pick(f"「{key}」", f"“{key}”")

    def _role_or_text(self, text: str) -> str:
        role = (self.roles or {}).get(text) if hasattr(self.roles, "get") else None
        label = getattr(role, "label", None)
        if label is not None:
            return label.get("zh" if self.zh else "en")
        return self._pick(f"「{text}」", f"“{text}”")

    def _field_type(self, name: str) -> str | None:
        spec = self.spec.fields.get(name)
        return spec.type if spec else None

    @staticmethod
    def _is_roles(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
            and node.value.id == "actor" and node.attr == "roles"

    @staticmethod
    def _is_null(node: ast.AST) -> bool:
        return (isinstance(node, ast.Constant) and node.value is None) or \
            (isinstance(node, ast.Name) and node.id in ("null", "None"))
