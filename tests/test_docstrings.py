"""Public classes and functions say what they do, and modules' forward methods state shapes."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest
from torch import nn

import rnnseq

MODULES = sorted(m.name for m in pkgutil.walk_packages(rnnseq.__path__, "rnnseq."))

# A tensor shape in the shape vocabulary: a parenthesised, comma-separated list of dimensions,
# each a capital (B batch, S source steps, T target steps, F features, H hidden, V vocab, ...),
# maybe primed (S'), with a factor (2H), a subscript naming which one (V_lm), or arithmetic
# (T + 1, B*K); or a number, or ``...`` for leading dimensions; at least one capital, so that
# "(2015, 2017)" is no shape. At least one comma, as in Python:
# a 1-D shape is written (B,). A lone parenthesised capital, "(B)", is rejected: it reads the same
# as a list marker or an initial, so it cannot show that the author meant a shape.
_DIM = r"(?:\d*[A-Z]'*(?:_[a-z]+)?|\d+|\.\.\.)"
_EXPR = rf"{_DIM}(?:\s*[-+*/]\s*{_DIM})*"
SHAPE = re.compile(rf"\(\s*{_EXPR}\s*,\s*(?:{_EXPR}\s*(?:,\s*{_EXPR}\s*)*)?\)")


def states_a_shape(text: str) -> bool:
    """Whether ``text`` names at least one tensor shape such as ``(B, S, F)`` or ``(B,)``."""
    return any(re.search("[A-Z]", shape.group()) for shape in SHAPE.finditer(text))


def _public_members(module):
    """Public classes and functions defined in ``module`` (not imported into it)."""
    for name, obj in vars(module).items():
        if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj)) \
                and obj.__module__ == module.__name__:
            yield name, obj


def _inherited_from_outside(cls, name: str) -> bool:
    """Whether ``name`` overrides a method of a base class from outside rnnseq (a Lightning or
    torch hook, documented there)."""
    return any(name in vars(base) for base in cls.__mro__[1:]
               if not base.__module__.startswith("rnnseq"))


def _undocumented(module) -> list[str]:
    missing = []
    for name, obj in _public_members(module):
        if not inspect.getdoc(obj):
            missing.append(name)
        if not inspect.isclass(obj):
            continue
        for method_name, method in vars(obj).items():
            function = method.fget if isinstance(method, property) else method
            if method_name.startswith("_") or not inspect.isfunction(function):
                continue
            # a method overriding a documented rnnseq method shares its docstring (inspect.getdoc)
            documented = inspect.getdoc(getattr(obj, method_name)) if not isinstance(
                method, property) else function.__doc__
            if not documented and not _inherited_from_outside(obj, method_name):
                missing.append(f"{name}.{method_name}")
        forward = vars(obj).get("forward")
        if issubclass(obj, nn.Module) and forward is not None:
            docs = (obj.__doc__ or "") + (forward.__doc__ or "")
            if not states_a_shape(docs):
                missing.append(f"{name}.forward (no tensor shapes)")
    return missing


@pytest.mark.parametrize("text", [
    "(B, S, F)", "(B,)", "(B, T + 1)", "(N, S, V)", "``(B, S', 2H)``", "(B*K, V)",
    "(B, T - 1, V_lm)", "(..., S)", "(L, B, H)", "returns (B, 4)",
])
def test_shape_matcher_accepts_shapes(text):
    assert states_a_shape(text)


@pytest.mark.parametrize("text", [
    "(Luong et al., 2015)", "(CTC)", "(B)", "(Press & Wolf, 2017)", "(a, b)", "(e.g. B, S)",
    "(TODO, later)", "(Adam, SGD)", "(2015, 2017)", "no shapes here",
])
def test_shape_matcher_rejects_prose(text):
    assert not states_a_shape(text)


@pytest.mark.parametrize("module_name", MODULES)
def test_public_api_is_documented(module_name):
    assert _undocumented(importlib.import_module(module_name)) == []
