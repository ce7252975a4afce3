"""The package: the fixed top-level layout, its metadata (dependencies, extras, the
package-dir mapping), the two commands, and the README's example run as printed."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_top_level_layout():
    for name in ("pyproject.toml", "README.md", "Makefile", ".ci/run"):
        assert (ROOT / name).is_file(), name
    for name in ("tracecc", "runtime", "passes", "codegen", "tests", "examples", "benchmarks"):
        assert (ROOT / name).is_dir(), name


def test_dependencies_and_extras():
    deps = {re.split(r"[<>=!~ ]", d, maxsplit=1)[0].lower(): d for d in PYPROJECT["project"]["dependencies"]}
    assert {"numpy", "llvmlite", "networkx"} <= set(deps)
    assert ">=2.4" in deps["numpy"]
    assert ">=0.50" in deps["llvmlite"] and "<0.51" in deps["llvmlite"]  # a pinned minor range
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert any(d.startswith("triton>=3.9") for d in extras["gpu"])
    test_deps = " ".join(extras["test"])
    for name in ("pytest", "hypothesis", "triton>=3.9"):
        assert name in test_deps
    assert any(d.startswith("matplotlib") for d in extras["bench"])
    assert "torch" not in test_deps  # PyTorch comparisons are optional, never required


def test_every_package_is_installed_and_under_tracecc():
    """Each folder with an __init__.py is listed (a non-editable install would lose it
    otherwise), and runtime/passes/codegen install only as tracecc.* (nothing generic)."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    mapping = setuptools["package-dir"]
    assert mapping["tracecc.runtime"] == "runtime" and mapping["tracecc.passes"] == "passes"
    assert mapping["tracecc.codegen"] == "codegen"
    assert all(p == "tracecc" or p.startswith("tracecc.") for p in listed)
    on_disk = set()
    for top, package in (("tracecc", "tracecc"), ("runtime", "tracecc.runtime"),
                         ("passes", "tracecc.passes"), ("codegen", "tracecc.codegen")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top).parts
            on_disk.add(".".join((package,) + rel))
    assert on_disk <= listed, f"packages missing from pyproject: {sorted(on_disk - listed)}"


def _run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_generic_names_are_not_importable_from_elsewhere(tmp_path):
    code = ("import importlib.util, tracecc.runtime, tracecc.passes, tracecc.codegen\n"
            "print([importlib.util.find_spec(n) for n in ('runtime', 'passes', 'codegen')])\n"
            "print(tracecc.runtime.__name__)")
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[None, None, None]", "tracecc.runtime"]


def test_commands():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test:", makefile, re.M) and re.search(r"^demo:", makefile, re.M)
    assert ".venv" in makefile and "pytest" in makefile and "[test" in makefile
    assert "make test" in (ROOT / ".ci/run").read_text()
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme


def _readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks, "the README has no python example"
    return blocks[0]


def test_readme_example_runs_as_printed(tmp_path):
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 12  # "a ten-line example"
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    loss, shape = done.stdout.strip().split(" ", 1)
    assert float(loss) > 0 and shape == "tracecc.Size([784, 10])"


def test_readme_example_matches_pytorch(tmp_path):
    """The same ten lines with `import torch` give the same kind of answer."""
    pytest.importorskip("torch")
    code = _readme_example().replace("import tracecc as torch", "import torch")
    done = _run_python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().split(" ", 1)[1] == "torch.Size([784, 10])"
