"""A multi grader's `calculate_output`: arithmetic over its sub-graders' scores, read without `eval`.

Allowed: numbers, the sub-graders' names, `+ - * /`, `^` and `**` (power), parentheses, and the
functions OpenAI's grader guide lists: `min`, `max`, `abs`, `floor`, `ceil`, `exp`, `sqrt`, `log`.
Anything else (attributes, subscripts, comparisons, other calls) is a FormulaError when the grader
is checked, before it ever runs.
"""

from __future__ import annotations

import ast
import math
import operator

FUNCTIONS = {"min": min, "max": max, "abs": abs, "floor": math.floor, "ceil": math.ceil, "exp": math.exp,
             "sqrt": math.sqrt, "log": math.log}
_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_LENGTH = 2000


class FormulaError(ValueError):
    pass


def parse(formula: str, names: set[str]) -> ast.Expression:
    """The formula's syntax tree, checked: only the allowed forms, only the known names."""
    if len(formula) > MAX_LENGTH:
        raise FormulaError(f"calculate_output is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(formula.strip().replace("^", "**"), mode="eval")  # `^`: power, at its precedence
    except SyntaxError as e:
        raise FormulaError(f"calculate_output is not a formula: {e.msg}") from None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id not in names and node.id not in FUNCTIONS:
            raise FormulaError(f"calculate_output names '{node.id}', which is not one of the graders "
                               f"({', '.join(sorted(names)) or 'none'}) or functions ({', '.join(FUNCTIONS)})")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
                raise FormulaError(f"calculate_output may call only {', '.join(FUNCTIONS)}, with plain arguments")
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise FormulaError("calculate_output may hold only numbers, grader names and operators")
        elif not isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load,
                                   *_BINARY, *_UNARY)):
            raise FormulaError(f"calculate_output may not use {type(node).__name__} "
                               "(numbers, grader names, + - * / ^, parentheses and functions only)")
    return tree


def evaluate(tree: ast.Expression, scores: dict[str, float]) -> float:
    """The formula's value for these scores; FormulaError for a value it has none at (x / 0, log(0))."""
    def value(node) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            return float(scores[node.id])
        if isinstance(node, ast.UnaryOp):
            return _UNARY[type(node.op)](value(node.operand))
        if isinstance(node, ast.BinOp):
            left, right = value(node.left), value(node.right)
            if isinstance(node.op, ast.Pow) and abs(right) > 64:
                raise FormulaError("calculate_output raises to a power above 64")
            return _BINARY[type(node.op)](left, right)
        return float(FUNCTIONS[node.func.id](*(value(a) for a in node.args)))

    try:
        result = value(tree)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError) as e:
        raise FormulaError(f"calculate_output has no value here: {e}") from None
    if isinstance(result, complex) or not math.isfinite(result):
        raise FormulaError("calculate_output has no finite value here")
    return float(result)
