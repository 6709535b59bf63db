"""A lint for code that would break on a GPU while every CPU test passes.

On the CPU every tensor lives on the same device, so nothing in a CPU test fails when a module
makes a tensor without saying where, hands a CPU tensor to a module that lives on the GPU, or
calls a solver that exists for the CPU only. These rules find those places by reading the code
(:func:`check_source`); ``tests/test_devices.py`` runs them over the package and runs what can run
on PyTorch's ``meta`` device, where mixing devices fails as it does on CUDA.

A line (or the comment line just above it) marked ``# host: <reason>`` is exempt: the reason says
why that tensor belongs on the CPU (a host batch before it is moved, features computed as the
data pipeline computes them).

Rules:

``factory``
    ``torch.zeros/ones/full/empty/arange/tensor/as_tensor/eye/linspace/rand/randn/randint/
    randperm`` and the window functions without ``device=``, except as the argument of
    ``register_buffer`` or ``nn.Parameter`` (the module moves those).
``numpy``
    ``.numpy()`` not directly after ``.cpu()`` (fails on a CUDA tensor).
``cpu-copy``
    ``.cpu()`` whose result is not read on the host at once (``.numpy()``, ``.tolist()``,
    ``.item()``) or handed to a sink (a file, TensorBoard, a plot, ``np.asarray``): a CPU copy
    that goes on into device code.
``host-read-in-step``
    ``.cpu()``, ``.item()``, ``.tolist()`` or ``float(...)`` inside a training or evaluation
    step or a loss: each waits for the device once per batch.
``module-outside-init``
    ``LogMel``, ``GriffinLimVocoder`` or a ``torchaudio.transforms`` module built outside
    ``__init__`` without ``.to(...)``: it stays on the CPU while the task moves.
``cpu-only-solver`` (everywhere in the package)
    least-squares drivers other than ``gels`` (``gelsd``, ``gelsy``, ``gelss`` are CPU only),
    torchaudio's ``InverseMelScale`` (which solves with them), and ``fork_rng(devices=[])``
    around a ``manual_seed`` (the GPU's stream is reseeded and not restored).
``literal-cpu``
    a literal ``"cpu"`` as ``map_location``, ``device``, autocast device, ``.to("cpu")`` or a
    command's ``--device`` default, outside :mod:`rnnseq.resources`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

FACTORIES = {"zeros", "ones", "full", "empty", "arange", "tensor", "as_tensor", "eye", "linspace",
             "rand", "randn", "randint", "randperm", "hann_window", "hamming_window",
             "blackman_window", "bartlett_window", "kaiser_window"}
HOST_READS = {"numpy", "tolist", "item"}
SINK_CALLS = {"asarray", "array", "write", "Speech", "save", "mel_pair_image",
              "attention_heatmap", "add_audio", "add_figure", "add_image", "add_scalar",
              "add_histogram", "add_text"}
STEP_FUNCTIONS = {"training_step", "validation_step", "test_step", "evaluation_step",
                  "training_loss", "compute_losses"}
MODULES = {"LogMel", "GriffinLimVocoder"}
CPU_ONLY_DRIVERS = {"gelsd", "gelsy", "gelss"}

# Where the device rules apply: code that runs on the task's device. The rest of the data layer
# (datasets, workers, collation, tokenisers, corpora) runs on the host by design; the solver rule
# applies everywhere.
DEVICE_CODE = ("models/", "decoding/", "tasks/", "metrics.py", "callbacks.py", "data/vocoder.py",
               "data/audio.py", "synthesize.py", "evaluate.py", "transcribe.py", "generate.py",
               "finished_runs.py")


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str
    code: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.code}"


def _name(node: ast.AST) -> str:
    """The last name of a call's function: ``torch.zeros`` -> ``zeros``, ``f`` -> ``f``."""
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _dotted(node: ast.AST) -> str:
    """``torch.linalg.lstsq`` for that attribute chain, ``""`` when it is not one."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else ""
    return ""


def _is_cpu(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value == "cpu"


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _exempt_lines(source: str) -> set[int]:
    """Lines covered by a ``# host: <reason>`` pragma: the marked line, and the line after a
    comment line that carries one."""
    lines = source.splitlines()
    exempt = set()
    for number, text in enumerate(lines, start=1):
        marker = text.find("# host:")
        if marker < 0 or not text[marker + len("# host:"):].strip():
            continue
        exempt.add(number)
        if text.strip().startswith("#"):
            exempt.add(number + 1)
    return exempt


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str, device_code: bool, resources: bool):
        self.path, self.device_code, self.resources = path, device_code, resources
        self.findings: list[Finding] = []
        self.parents: dict[ast.AST, ast.AST] = {}
        self.functions: list[str] = []

    def add(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, node.lineno, rule, ast.unparse(node)[:80]))

    def check(self, tree: ast.AST) -> None:
        for parent in ast.walk(tree):
            for child in ast.iter_child_nodes(parent):
                self.parents[child] = parent
        self.visit(tree)

    def visit_FunctionDef(self, node) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_AsyncFunctionDef = visit_FunctionDef

    def _enclosing_calls(self, node: ast.AST):
        """The calls that ``node`` is an argument of, innermost first."""
        parent = self.parents.get(node)
        while parent is not None and not isinstance(parent, ast.stmt):
            if isinstance(parent, ast.Call) and node is not parent.func:
                yield parent
            node, parent = parent, self.parents.get(parent)

    def _chained_into(self, call: ast.Call) -> str:
        """The method called on ``call``'s result (``x.cpu().numpy()`` -> ``numpy``), or ``""``."""
        parent = self.parents.get(call)
        if isinstance(parent, ast.Attribute) and isinstance(self.parents.get(parent), ast.Call):
            return parent.attr
        return ""

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            call = item.context_expr
            devices = _keyword(call, "devices") if isinstance(call, ast.Call) else None
            reseeds = any(isinstance(n, ast.Call) and _name(n.func) == "manual_seed"
                          for statement in node.body for n in ast.walk(statement))
            if (_name(getattr(call, "func", None)) == "fork_rng" and isinstance(devices, ast.List)
                    and not devices.elts and reseeds):
                self.add(call, "cpu-only-solver")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        name, dotted = _name(node.func), _dotted(node.func)
        in_step = bool(self.functions) and self.functions[-1] in STEP_FUNCTIONS
        method = isinstance(node.func, ast.Attribute)
        # cpu-only-solver: everywhere
        driver = _keyword(node, "driver")
        if isinstance(driver, ast.Constant) and driver.value in CPU_ONLY_DRIVERS:
            self.add(node, "cpu-only-solver")
        elif name == "InverseMelScale":
            self.add(node, "cpu-only-solver")
        if self.device_code:
            if dotted.startswith("torch.") and name in FACTORIES and dotted.count(".") == 1:
                holders = {_name(c.func) for c in self._enclosing_calls(node)}
                if _keyword(node, "device") is None and not holders & {"register_buffer",
                                                                      "Parameter"}:
                    self.add(node, "factory")
            if method and name == "numpy" and not node.args:
                receiver = node.func.value
                if not (isinstance(receiver, ast.Call) and _name(receiver.func) == "cpu"):
                    self.add(node, "numpy")
            if method and name == "cpu" and not node.args:
                sunk = self._chained_into(node) in HOST_READS or any(
                    _name(c.func) in SINK_CALLS for c in self._enclosing_calls(node))
                if not sunk:
                    self.add(node, "cpu-copy")
            if in_step and ((method and name in {"cpu", "item", "tolist"})
                            or (isinstance(node.func, ast.Name) and name == "float"
                                and node.args and not isinstance(node.args[0], ast.Constant))):
                self.add(node, "host-read-in-step")
            if (name in MODULES or dotted.startswith("torchaudio.transforms.")) and \
                    "__init__" not in self.functions and self._chained_into(node) != "to":
                self.add(node, "module-outside-init")
            if not self.resources:
                cpu = (_is_cpu(_keyword(node, "map_location")) or _is_cpu(_keyword(node, "device"))
                       or (name == "autocast" and node.args and _is_cpu(node.args[0]))
                       or (method and name == "to" and node.args and _is_cpu(node.args[0]))
                       or (name == "add_argument" and node.args
                           and isinstance(node.args[0], ast.Constant)
                           and node.args[0].value == "--device"
                           and _is_cpu(_keyword(node, "default"))))
                if cpu:
                    self.add(node, "literal-cpu")
        self.generic_visit(node)


def check_source(source: str, path: str = "<string>", device_code: bool = True,
                 resources: bool = False) -> list[Finding]:
    """Every finding of the rules in ``source``, in order, less the lines marked ``# host:``."""
    checker = _Checker(path, device_code, resources)
    checker.check(ast.parse(source))
    exempt = _exempt_lines(source)
    return sorted((f for f in checker.findings if f.line not in exempt),
                  key=lambda f: (f.line, f.rule))


def check_package(root: Path) -> list[Finding]:
    """Every finding in the package under ``root`` (the folder that holds ``rnnseq/``)."""
    package = root / "rnnseq"
    findings = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        findings += check_source(path.read_text(), f"rnnseq/{relative}",
                                 device_code=relative.startswith(DEVICE_CODE),
                                 resources=relative == "resources.py")
    return findings
