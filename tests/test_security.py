"""No pickle anywhere: every Python file of the project is parsed and its imports and calls checked.

Models and adapters travel as ONNX / safetensors / JSON, verified against the manifest's sha256;
a pickle can run code when it is loaded, so none of these may appear in any .py file here:
- ``import pickle`` / ``cPickle`` / ``_pickle`` / ``dill`` / ``cloudpickle`` / ``joblib`` / ``shelve``
  (or ``from`` any of them), ``pandas.read_pickle``;
- ``torch.load(...)`` without ``weights_only=True``;
- ``np.load(...)`` / ``numpy.load(...)`` with ``allow_pickle=True`` (numpy's default is False).
The scan works on the syntax tree, so prose that says "no pickle" is not a finding.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
SKIP_DIRS = {".git", ".venv", "venv", "build", "install", "log", "node_modules", "__pycache__", ".ruff_cache"}


def project_python_files() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py")  # .venv-py3.10 / .venv-py3.12: scripts/test_pythons.sh's venvs
                  if not any(d in SKIP_DIRS or d.startswith(".venv") for d in p.relative_to(ROOT).parts[:-1])
                  and p.is_file())


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _keyword_is_true(call: ast.Call, name: str) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is True for k in call.keywords)


def findings(source: str, filename: str) -> list[str]:
    out = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            out += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES:
            out.append(f"{where}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.endswith("read_pickle"):
                out.append(f"{where}: {name}(...)")
            elif name == "torch.load" and not _keyword_is_true(node, "weights_only"):
                out.append(f"{where}: torch.load(...) without weights_only=True")
            elif name in ("np.load", "numpy.load") and any(
                    k.arg == "allow_pickle" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                    for k in node.keywords):
                out.append(f"{where}: {name}(..., allow_pickle=...)")
    return out


def test_the_scanner_finds_what_it_is_meant_to_find():
    bad = ("import pickle\nfrom joblib import load\nimport torch\ntorch.load('x.pt')\n"
           "import numpy as np\nnp.load('a.npy', allow_pickle=True)\nimport pandas as pd\npd.read_pickle('p')\n")
    assert len(findings(bad, "bad.py")) == 5
    good = ('"""no pickle here"""\nimport torch\ntorch.load("x.pt", weights_only=True)\n'
            "import numpy as np\nnp.load('a.npy')\nnp.load('a.npy', allow_pickle=False)\n")
    assert findings(good, "good.py") == []


def test_no_pickle_loading_anywhere_in_the_project():
    files = project_python_files()
    assert any(p.parts[-2:] == ("runtime", "policy.py") for p in files), "the scan missed the package"
    problems = [f for p in files for f in findings(p.read_text(encoding="utf-8"), str(p.relative_to(ROOT)))]
    assert problems == [], "pickle-capable loading found:\n" + "\n".join(problems)
