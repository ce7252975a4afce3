"""The docs cannot drift from the code: the generated pages (ops.md, errors.md) and the dump
excerpts (docs/tour.md, README.md) are regenerated here and compared with the committed
files; links resolve; README's code runs; its benchmark numbers come from
docs/benchmarks.md. After a change that moves them, run `make docs`."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tracecc import _docgen
from tracecc.runtime import errors
from tracecc.runtime.registry import PRIMITIVES

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
STALE = "is out of date: run `make docs` (python -m tracecc._docgen) and commit the result"


@pytest.mark.parametrize("page", sorted(_docgen.PAGES))
def test_generated_page_is_up_to_date(page):
    assert (DOCS / page).read_text() == _docgen.PAGES[page](), f"docs/{page} {STALE}"


@pytest.fixture(scope="module")
def tour_dump(tmp_path_factory) -> Path:
    return _docgen.run_tour(tmp_path_factory.mktemp("tour") / "tracecc_dump")


@pytest.mark.parametrize("page", _docgen.EXCERPT_PAGES)
def test_dump_excerpts_are_what_tracecc_dump_writes(page, tour_dump):
    text = (REPO / page).read_text()
    assert "<!-- dump: " in text
    fresh = _docgen.refresh_excerpts(text, tour_dump)
    assert _docgen.without_times(fresh) == _docgen.without_times(text), f"{page}'s dump excerpts {STALE}"


def test_every_primitive_has_a_row_and_every_error_code_a_line():
    ops_md = (DOCS / "ops.md").read_text()
    for name in PRIMITIVES:
        assert f"| `{name}` |" in ops_md, name
    errors_md = (DOCS / "errors.md").read_text()
    for cls in errors.ERROR_CLASSES + [errors.TraceccError]:
        assert f"| {cls.code} | `{cls.__name__}` |" in errors_md, cls


def test_ops_page_reports_a_backend_that_cannot_lower(monkeypatch):
    """Coverage is measured, not copied: take exp's emitter away and the page says so."""
    from tracecc.codegen.llvm import scalar
    monkeypatch.delitem(scalar.EMITTERS, "exp")
    notes: list = []
    assert _docgen._coverage("exp", "llvm", notes) == "no"
    assert _docgen._coverage("exp", "triton", notes) == "yes"
    assert _docgen._coverage("pow", "llvm", []) == "float only"  # integer pow is not lowered


def test_an_error_class_without_a_docstring_stops_the_generator():
    class Undocumented(errors.TraceccError):
        code = "TC999"

    try:
        with pytest.raises(ValueError, match="Undocumented .TC999. has no docstring"):
            _docgen.errors_markdown()
    finally:
        del Undocumented
        import gc
        gc.collect()


def test_excerpt_selectors(tmp_path):
    (tmp_path / "f.kir").write_text(
        "program p\nkernel a_0 [pointwise] over (i0<4):\n  x\n  y\nkernel b_1 [reduction] over ():\n"
        "  z\n# scheduled in 1.5 ms\n")
    assert _docgen.excerpt(tmp_path, "f.kir kernel=a_0") == "kernel a_0 [pointwise] over (i0<4):\n  x\n  y\n"
    assert _docgen.excerpt(tmp_path, "f.kir grep=~x|~z") == "  x\n  z\n"
    assert _docgen.excerpt(tmp_path, "f.kir range=program..+1 range=b_1..~z") == \
        "program p\n...\nkernel b_1 [reduction] over ():\n  z\n"
    assert _docgen.excerpt(tmp_path, "f.kir max=2 show") == \
        "==> tracecc_dump/f.kir <==\nprogram p\nkernel a_0 [pointwise] over (i0<4):\n...\n"
    with pytest.raises(ValueError, match="no line contains 'nothing'"):
        _docgen.excerpt(tmp_path, "f.kir range=nothing..")
    assert _docgen.without_times("# scheduled in 1.5 ms") == "# scheduled in <t> ms"


def test_loose_excerpts_survive_reordering_but_not_loss(tmp_path):
    (tmp_path / "log").write_text("b\na\n")
    page = "<!-- dump: log loose -->\n```\na\nb\n```\n"
    assert _docgen.refresh_excerpts(page, tmp_path) == page
    (tmp_path / "log").write_text("b\nc\n")
    assert _docgen.refresh_excerpts(page, tmp_path) == "<!-- dump: log loose -->\n```\nb\nc\n```\n"


# ---------------------------------------------------------------- README and links
def _markdown_files():
    return [REPO / "README.md"] + sorted(DOCS.glob("*.md"))


def test_paths_named_in_the_docs_exist():
    missing = []
    for md in _markdown_files():
        text = md.read_text()
        for target in re.findall(r"\]\(([^)#\s]+)\)", text):  # [text](relative/link)
            if not target.startswith("http") and not (md.parent / target).exists():
                missing.append(f"{md.name}: {target}")
        for path in re.findall(r"(?<![\w/.])((?:docs|examples|benchmarks)/[\w./-]+\.(?:md|py))", text):
            if not (REPO / path).exists():
                missing.append(f"{md.name}: {path}")
    assert not missing, missing


def _python_block_after(text: str, heading: str) -> str:
    section = text.split(heading, 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def test_readme_compiled_training_step_runs(tmp_path):
    code = _python_block_after((REPO / "README.md").read_text(), "## A compiled training step")
    assert len(code.strip().splitlines()) <= 20 and "@torch.compile" in code
    script = tmp_path / "step.py"
    script.write_text(code)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                          env={"PATH": "/usr/bin:/bin", "OPENBLAS_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert 0.0 <= float(done.stdout.strip()) < 2.3  # cross-entropy of 10 classes, after 20 steps


def test_readme_benchmark_numbers_come_from_docs_benchmarks():
    readme = (REPO / "README.md").read_text()
    table = readme.split("## Benchmarks", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| W")]
    assert rows
    bench = (DOCS / "benchmarks.md").read_text()
    for row in rows:
        for cell in row.strip("|").split("|")[1:]:
            assert cell.strip() in bench, f"README's benchmark cell {cell.strip()!r} is not in benchmarks.md"


def test_makefile_has_demo_and_docs_targets():
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^demo: .*\n\t\$\(PY\) examples/demo\.py", makefile, re.M)
    assert re.search(r"^docs: .*\n\t\$\(PY\) -m tracecc\._docgen", makefile, re.M)
