"""How the project installs, as a user's site-packages sees it: ``preprocess/`` becomes the package
``s2sft_preprocess`` (no top-level ``preprocess``), the console scripts resolve, and the same
modules still run as ``python -m preprocess.<module>`` from the repository root."""
import configparser
import os
import re
import shutil
import subprocess
import sys
import zipfile

from conftest import REPO


def test_preprocess_modules_never_import_the_folder_by_name():
    """Relative imports only, so the modules work as ``preprocess`` and as ``s2sft_preprocess``."""
    folder = os.path.join(REPO, "preprocess")
    for name in sorted(os.listdir(folder)):
        if name.endswith(".py"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                absolute = re.findall(r"^\s*(?:from|import)\s+(?:s2sft_)?preprocess\b.*$", f.read(), re.M)
            assert not absolute, f"preprocess/{name}: {absolute}"


def test_python_m_preprocess_from_the_repository_root():
    proc = subprocess.run([sys.executable, "-m", "preprocess.wordnet", "--help"], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("usage: python -m preprocess.wordnet")


def test_wheel_installs_preprocess_as_s2sft_preprocess(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(os.path.join(REPO, "setup.py"), src)
    for package in ("s2sft_fairseq", "preprocess", "export_templates"):
        shutil.copytree(os.path.join(REPO, package), src / package, ignore=shutil.ignore_patterns("__pycache__"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp_path / "dist"), str(src)],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").iterdir()
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        z.extractall(tmp_path / "site")
    tops = {n.split("/")[0] for n in names}
    assert tops == {"s2sft_fairseq", "s2sft_preprocess", "s2sft_export_templates", "s2sft_fairseq-0.1.0.dist-info"}, tops
    modules = sorted(n for n in os.listdir(os.path.join(REPO, "preprocess")) if n.endswith(".py"))
    assert "prepare.py" in modules
    assert sorted(n.split("/", 1)[1] for n in names if n.startswith("s2sft_preprocess/")) == modules

    entry_points = configparser.ConfigParser()
    entry_points.read(tmp_path / "site" / "s2sft_fairseq-0.1.0.dist-info" / "entry_points.txt")
    assert dict(entry_points["console_scripts"]) == {
        "s2sft-prepare": "s2sft_preprocess.prepare:cli_main",
        "s2sft-import": "s2sft_fairseq.checkpoints.cli:cli_main",
        "s2sft-score": "s2sft_fairseq.scoring.cli:cli_main",
        "s2sft-export": "s2sft_fairseq.export.cli:cli_main",
        "s2sft-serve": "s2sft_fairseq.serving.cli:cli_main",
    }
    assert "s2sft_fairseq/serving/demo.html" in names  # the demo page is package data

    # the installed copy, from outside the repository: console scripts resolve, the text tools run
    site = str(tmp_path / "site")
    script = f"""
import importlib.metadata as md, sys
site = {site!r}
(dist,) = md.distributions(path=[site])
for ep in dist.entry_points.select(group="console_scripts"):
    main = ep.load()
    assert callable(main) and sys.modules[main.__module__].__file__.startswith(site), ep
from s2sft_preprocess.text import one_line
import s2sft_fairseq.text
assert s2sft_fairseq.text.__file__.startswith(site)
from s2sft_fairseq.export.unilm import template_path
import s2sft_export_templates
assert template_path() == s2sft_export_templates.MODELING and template_path().startswith(site), template_path()
assert one_line("a\\x00b\\u2028 c\\n") == "a b c"
from s2sft_preprocess import prepare
try:
    prepare.cli_main(["--pretrained", "x", "--trainpref", "/nonexistent/train", "--destdir", "out"])
except SystemExit as e:
    print(e.code)
"""
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=site, PYTHONWARNINGS="ignore"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.splitlines()[-1] == "s2sft-prepare: error: no such file: /nonexistent/train.src"
