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
            if not re.search(r"\([A-Z]", docs):  # a shape such as (B, S, F)
                missing.append(f"{name}.forward (no tensor shapes)")
    return missing


@pytest.mark.parametrize("module_name", MODULES)
def test_public_api_is_documented(module_name):
    assert _undocumented(importlib.import_module(module_name)) == []
