"""The codebase keeps the shape a newcomer can follow (docs/design.md names one home per algorithm).

* no module of the package over ~400 lines and no function over ~80 lines;
* no code written twice (pylint's duplicate-code check, 8 similar lines);
* importing the plugin changes nothing of the interpreter a user sees (the one-line error hook is
  installed only when a fairseq command-line tool runs, see s2sft_fairseq/fairseq_patches.py);
* project docs and code never point at a design document that is not in the repository.
"""
import ast
import os
import subprocess
import sys

import pytest

from conftest import REPO

PACKAGE = os.path.join(REPO, "s2sft_fairseq")
MAX_FILE_LINES, MAX_FUNCTION_LINES = 400, 80


def package_files():
    for root, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(root, name)


def test_no_long_files_or_functions():
    long_files, long_functions = [], []
    for path in package_files():
        with open(path, encoding="utf-8") as f:
            source = f.read()
        rel = os.path.relpath(path, REPO)
        if source.count("\n") > MAX_FILE_LINES:
            long_files.append(f"{rel}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long_functions.append(f"{rel}:{node.lineno} {node.name}: {n} lines")
    assert not long_files and not long_functions, long_files + long_functions


@pytest.mark.slow
def test_no_duplicate_code():
    proc = subprocess.run([sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
                           "--min-similarity-lines=8", "s2sft_fairseq", "preprocess"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert "duplicate-code" not in proc.stdout and proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_plain_import_leaves_the_excepthook_alone():
    proc = subprocess.run([sys.executable, "-c", "import s2sft_fairseq, sys; assert sys.excepthook is sys.__excepthook__"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_no_reference_to_a_design_document_outside_the_repository():
    offenders = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", ".venv", "__pycache__", "work", "fixtures", ".pytest_cache")]
        for name in files:
            if not name.endswith((".py", ".md", ".sh", ".yaml")) or name == os.path.basename(__file__):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8", errors="replace") as f:
                for i, line in enumerate(f, 1):
                    if "DESIGN" in line or "../shared" in line:
                        offenders.append(f"{os.path.relpath(path, REPO)}:{i}: {line.strip()[:80]}")
    assert not offenders, offenders[:20]
