"""The patch ledger (``s2sft_fairseq/fairseq_patches.py``): what importing the plugin changes, when,
and the checks of each patch against the installed fairseq."""
import os
import re
import subprocess
import sys
import types
import warnings

import pytest

from conftest import BIN, REPO, USER_DIR

import s2sft_fairseq  # noqa: F401  (installs the patches)
from fairseq import checkpoint_utils
from s2sft_fairseq import errors, fairseq_patches
from s2sft_fairseq.fairseq_patches import ON_FAIRSEQ_CLI, ON_IMPORT, PATCHES, FairseqPatchWarning


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore",
             PYTHONPATH=REPO)
    e.pop("S2SFT_TRACEBACK", None)
    return e


def patch_named(name):
    return next(p for p in PATCHES if p.name == name)


# ------------------------------------------------------------------------------ when patches apply
def test_plain_import_keeps_the_excepthook():
    """A notebook or another program importing the plugin keeps Python's own error report."""
    check = subprocess.run([sys.executable, "-c", "import s2sft_fairseq, sys; assert sys.excepthook is sys.__excepthook__"],
                           cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr[-3000:]
    raised = subprocess.run([sys.executable, "-c", "import s2sft_fairseq.errors as e; raise e.S2SFTError('f.pt: bad')"],
                            cwd=REPO, env=env(), capture_output=True, text=True, timeout=120)
    assert raised.returncode == 1
    assert "Traceback" in raised.stderr and "S2SFTError: f.pt: bad" in raised.stderr
    assert "s2sft-fairseq: error:" not in raised.stderr


@pytest.mark.parametrize("launch", ["console script", "python -m fairseq_cli.generate"])
def test_fairseq_cli_prints_user_errors_on_one_line(tmp_path, launch):
    """fairseq-generate (either way it can be started) imports the plugin via --user-dir and gets
    the hook: a data directory without the dictionary is one line, exit status 1."""
    cmd = [os.path.join(BIN, "fairseq-generate")] if launch == "console script" else \
        [sys.executable, "-m", "fairseq_cli.generate"]
    proc = subprocess.run(cmd + [str(tmp_path), "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu",
                                 "--path", str(tmp_path / "checkpoint.pt")],
                          cwd=REPO, env=env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.rstrip().splitlines()[-1] == (
        f"s2sft-fairseq: error: {tmp_path}/dict.src.txt: missing; binarize the data with s2sft-prepare")


@pytest.mark.parametrize("argv0, main_spec, expected", [
    ("/venv/bin/fairseq-train", None, True),
    ("fairseq-generate", None, True),
    ("/venv/bin/fairseq-hydra-train", None, True),
    ("/venv/lib/python3.11/site-packages/fairseq_cli/train.py", "fairseq_cli.train", True),  # python -m
    ("/venv/bin/s2sft-prepare", None, False),
    ("/venv/bin/fairseq-train-wrapper", None, False),
    ("-c", None, False),
    ("/venv/lib/python3.11/site-packages/pytest/__main__.py", "pytest.__main__", False),
])
def test_fairseq_cli_detection(monkeypatch, argv0, main_spec, expected):
    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name=main_spec) if main_spec else None
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", [argv0, "data-bin"])
    assert fairseq_patches.fairseq_cli_running() is expected


def test_install_under_a_fairseq_cli_adds_the_excepthook(monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored afterwards
    monkeypatch.setattr(errors, "_previous_hook", None)
    monkeypatch.setattr(sys, "argv", ["/venv/bin/fairseq-train"])
    assert not errors.excepthook_installed()
    fairseq_patches.install()
    assert errors.excepthook_installed()


# ------------------------------------------------------------------------------ the ledger's checks
def test_every_patch_fits_the_installed_fairseq_and_the_import_ones_are_installed():
    assert [p.name for p in PATCHES] == ["weights-only allow-list", "atomic checkpoint copies",
                                         "unreadable checkpoint files", "missing --path", "one-line errors"]
    for patch in PATCHES:
        assert fairseq_patches.mismatch(patch) is None, patch.name
        assert patch.when in (ON_IMPORT, ON_FAIRSEQ_CLI)
        assert patch.what and patch.why and patch.changes
        if patch.when == ON_IMPORT:
            assert patch.installed(), patch.name
    assert patch_named("one-line errors").when == ON_FAIRSEQ_CLI
    assert not errors.excepthook_installed()  # pytest is not a fairseq command-line tool
    assert fairseq_patches.check_fairseq_version()


def test_a_patch_whose_target_changed_is_skipped_with_a_warning(monkeypatch):
    def changed(filenames, overrides=None):  # a fairseq whose loader takes other parameters
        return "fairseq's own"

    monkeypatch.setattr(checkpoint_utils, "load_model_ensemble_and_task", changed)
    patch = patch_named("missing --path")
    assert fairseq_patches.mismatch(patch) == (
        "fairseq.checkpoint_utils:load_model_ensemble_and_task takes (filenames, overrides), the patch expects "
        "(filenames, arg_overrides, task, strict, suffix, num_shards, state)")
    with pytest.warns(FairseqPatchWarning, match=r"not installing the fairseq patch 'missing --path' "
                                                 r"\(fairseq\.checkpoint_utils\.load_model_ensemble_and_task\)"):
        fairseq_patches.install((patch,))
    assert checkpoint_utils.load_model_ensemble_and_task is changed  # left alone
    assert not patch.installed()


def test_a_patch_whose_helper_is_gone_is_skipped(monkeypatch):
    """The read guard inspects traceback frames of fairseq's _upgrade_state_dict: without it, no guard."""
    monkeypatch.delattr(checkpoint_utils, "_upgrade_state_dict")
    patch = patch_named("unreadable checkpoint files")
    assert fairseq_patches.mismatch(patch) == "fairseq.checkpoint_utils:_upgrade_state_dict does not exist"


def test_another_fairseq_version_warns_and_fitting_patches_still_install(monkeypatch):
    import fairseq

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fairseq_patches.check_fairseq_version("0.12.2")
        assert fairseq_patches.check_fairseq_version("0.12.3.1")
    for other in ("0.13.0", "0.120.1", "1.0.0a0"):
        with pytest.warns(FairseqPatchWarning, match=rf"fairseq {re.escape(other)} is installed, but the plugin's "
                                                     r"fairseq patches target fairseq 0\.12\.x"):
            assert not fairseq_patches.check_fairseq_version(other)
    monkeypatch.setattr(fairseq, "__version__", "0.13.0")
    calls = []
    probe = fairseq_patches.Patch(name="probe", changes="nothing", what="-", why="-",
                                  relies_on=(("fairseq.file_io:PathManager.copy", ("src_path", "dst_path", "overwrite")),),
                                  install=lambda: calls.append(1), installed=lambda: bool(calls))
    with pytest.warns(FairseqPatchWarning, match="fairseq 0.13.0 is installed"):
        fairseq_patches.install((probe,))
    assert calls == [1]


def test_the_ledger_points_at_files_that_exist():
    """The "worked around without patching" list names files and folders of the package."""
    doc = fairseq_patches.__doc__
    pointers = set(re.findall(r"``([\w/]+(?:\.py|/))``", doc))
    assert {"sequence_generator.py", "checkpoints/vocab.py", "preprocess/binarize.py", "tasks/", "data/"} <= pointers
    for pointer in pointers:  # package-relative, or repository-relative (preprocess/, tests/)
        assert os.path.exists(os.path.join(USER_DIR, pointer)) or os.path.exists(os.path.join(REPO, pointer)), pointer
