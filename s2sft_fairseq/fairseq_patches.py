"""The patch ledger: every change the plugin makes to fairseq, torch or Python, in one place.

Importing ``s2sft_fairseq`` calls :func:`install`, which installs the entries of :data:`PATCHES`.
Each entry says what it changes, why (the fairseq behaviour, with its issue where there is one),
and which fairseq / torch attributes it relies on, with their parameter names. Before installing
an entry, :func:`install` checks those attributes: if one is missing or its parameters changed,
the entry is skipped with a :class:`FairseqPatchWarning` naming it (a patch applied blindly to a
function it was not written for could break what it was meant to protect). A fairseq other than
:data:`TARGET_FAIRSEQ` gets one warning; the entries whose checks pass are still installed.

Targets: fairseq 0.12.x (tested with ``fairseq-fixed`` 0.12.3.1, i.e. fairseq 0.12.2 plus the
Python 3.11 dataclass fix) and torch >= 2.6 (tested with 2.13).

When: the entries marked :data:`ON_IMPORT` are installed by any ``import s2sft_fairseq``;
:data:`ON_FAIRSEQ_CLI` entries (the one-line error hook) only when the running program is one of
fairseq's command-line tools, which import the plugin through ``--user-dir``. The plugin knows
it runs under such a tool (:func:`fairseq_cli_running`) when ``sys.argv[0]``'s file name is one
of fairseq's console scripts (:data:`FAIRSEQ_CONSOLE_SCRIPTS`: ``fairseq-train``,
``fairseq-generate``, ...), or when ``__main__`` was started as ``python -m fairseq_cli.<tool>``
(its module spec name starts with ``fairseq_cli.``). A notebook, a test or another program
that imports the plugin, the project's own ``s2sft-*`` tools included, keeps its own
``sys.excepthook``.

Adding a patch: write the change in a small module with an ``install()`` function (idempotent),
then add a :class:`Patch` to :data:`PATCHES` with what it changes, why, the attributes it relies
on and an ``installed`` check; ``tests/test_fairseq_patches.py`` checks every entry against the
installed fairseq.

fairseq behaviours the plugin works around *without* patching (pointers into the package):

* ``NGramRepeatBlock``'s CPU fallback (``--no-repeat-ngram-size``) compares the padding at the
  end of the token buffer instead of the last generated tokens and so never blocks anything
  (facebookresearch/fairseq#4709, #5206): ``sequence_generator.py`` always blocks with its own
  ``NGramBlocker``.
* fairseq-generate shards by ``--distributed-world-size`` / ``--distributed-rank`` and ignores
  ``--num-shards`` / ``--shard-id`` (every "shard" prints the whole split): the task's
  ``load_dataset`` (``tasks/``) honours them through the dataset's ``select_shard`` (``data/``).
* ``data_utils.batch_by_size`` drops the last batch when its size is not a multiple of
  ``--required-batch-size-multiple`` (always the longest examples) and stops with an
  ``AssertionError`` on an example longer than ``--max-tokens``: the dataset's
  ``batch_by_size`` (``data/``) keeps that batch and gives the long example its own batch
  (training: a one-line error).
* Outside training fairseq filters examples longer than the model's limits (an exception, or
  silently with ``--skip-invalid-size-inputs-valid-test``) and rounds batches to the multiple:
  the task's ``get_batch_iterator`` / ``_fit_to_positions`` (``tasks/``) truncate instead and use
  a multiple of 1, so every example is in exactly one batch.
* ``models.build_model`` hands the model a merged *copy* of the config while the trainer saves
  the original: the task's ``build_model`` (``tasks/``) writes what the model learned from the
  pretrained checkpoint back.
* The stock ``Dictionary`` puts ``<s> <pad> </s> <unk>`` at rows 0..3: ``checkpoints/vocab.py``
  keeps the checkpoint's vocabulary in id order instead.
* ``utils.import_user_module`` registers nothing when the package is already imported:
  ``preprocess/binarize.py`` (``register_plugin``) imports the task modules itself.
* The ``all_gather_list`` fallback for logging outputs allocates CUDA buffers and fails on
  CPU / gloo: the criterion's ``logging_outputs_can_be_summed`` (``criterions/``) returns True.
"""
import importlib
import inspect
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import fairseq
import torch
from fairseq import checkpoint_utils

from . import atomic_checkpoints, checkpoint_guard, errors, safe_loading

TARGET_FAIRSEQ = "0.12"  # the 0.12.x series; tested with fairseq-fixed 0.12.3.1
ON_IMPORT = "import"
ON_FAIRSEQ_CLI = "fairseq command-line tool"
FAIRSEQ_CONSOLE_SCRIPTS = ("fairseq-train", "fairseq-hydra-train", "fairseq-generate", "fairseq-interactive",
                           "fairseq-preprocess", "fairseq-validate", "fairseq-eval-lm", "fairseq-score")


class FairseqPatchWarning(UserWarning):
    """The installed fairseq / torch is not what a patch was written for."""


@dataclass(frozen=True)
class Patch:
    """One change to fairseq, torch or Python, and what it needs to stay correct."""

    name: str
    changes: str  # the attribute that is replaced or extended
    what: str
    why: str
    # ("module:attribute.path", parameter names, or None when only its existence matters)
    relies_on: Tuple[Tuple[str, Optional[Tuple[str, ...]]], ...]
    install: Callable[[], None]
    installed: Callable[[], bool]
    when: str = ON_IMPORT


def _allow_list_registered() -> bool:
    safe = torch.serialization.get_safe_globals()
    return all(g in safe for g in safe_loading.ALLOWED_GLOBALS)


PATCHES: Tuple[Patch, ...] = (
    Patch(
        name="weights-only allow-list",
        changes="torch.serialization safe globals (torch.serialization.add_safe_globals)",
        what="allow-lists exactly safe_loading.ALLOWED_GLOBALS (argparse.Namespace, numpy dtype / array / "
             "scalar reconstruction) for torch.load(weights_only=True); the check itself stays on, so a "
             "pickle that would run code is still refused",
        why="torch >= 2.6 loads with weights_only=True by default and fairseq 0.12's "
            "checkpoint_utils.load_checkpoint_to_cpu does not pass the flag, so no checkpoint written by "
            "fairseq (they hold an argparse.Namespace and numpy meters) loads at all "
            "(facebookresearch/fairseq#5610, #5603); passing weights_only=False instead would run whatever "
            "code a pickle carries",
        relies_on=(("torch.serialization:add_safe_globals", ("safe_globals",)),
                   ("torch.serialization:get_safe_globals", ())),
        install=safe_loading.register,
        installed=_allow_list_registered,
    ),
    Patch(
        name="atomic checkpoint copies",
        changes="fairseq.file_io.PathManager.copy",
        what="local copies go to a temporary file in the destination's folder, are fsynced and renamed "
             "into place (os.replace); remote (ioPath, '://') paths keep fairseq's copy",
        why="checkpoint_utils.save_checkpoint writes the first checkpoint of a save atomically (.tmp + "
            "rename) but copies it to the others, checkpoint_last.pt included, with PathManager.copy "
            "(shutil.copyfile): a kill during that copy leaves a truncated checkpoint_last.pt and the "
            "restart fails",
        relies_on=(("fairseq.file_io:PathManager.copy", ("src_path", "dst_path", "overwrite")),),
        install=atomic_checkpoints.install,
        installed=atomic_checkpoints.installed,
    ),
    Patch(
        name="unreadable checkpoint files",
        changes="fairseq.checkpoint_utils.load_checkpoint_to_cpu",
        what="re-raises a failure to read the file (open() error, an exception inside torch.load, a torch "
             "file that is not a fairseq checkpoint) as CheckpointFileError naming the file; anything else "
             "passes through unchanged",
        why="fairseq-generate / -interactive / -validate (--path) and a resuming fairseq-train "
            "(--restore-file) end in a long torch traceback on a truncated, corrupt or refused file, and "
            "torch's message advises weights_only=False; the guard tells these cases apart by the frames "
            "of the traceback (torch.serialization, fairseq's _upgrade_state_dict)",
        relies_on=(("fairseq.checkpoint_utils:load_checkpoint_to_cpu", ("path", "arg_overrides",
                                                                        "load_on_all_ranks")),
                   ("fairseq.checkpoint_utils:_upgrade_state_dict", ("state",)),
                   ("torch.serialization:load", None)),
        install=checkpoint_guard.install_read_guard,
        installed=checkpoint_guard.installed,
    ),
    Patch(
        name="missing --path",
        changes="fairseq.checkpoint_utils.load_model_ensemble_and_task",
        what="re-raises fairseq's IOError('Model file not found: PATH') as CheckpointNotFoundError "
             "(still an OSError) naming the path",
        why="fairseq checks that each --path file exists deep inside model loading and reports a "
            "missing file with a traceback",
        relies_on=(("fairseq.checkpoint_utils:load_model_ensemble_and_task",
                    ("filenames", "arg_overrides", "task", "strict", "suffix", "num_shards", "state")),),
        install=checkpoint_guard.install_not_found_guard,
        installed=lambda: getattr(checkpoint_utils.load_model_ensemble_and_task, "__s2sft_guard__", False),
    ),
    Patch(
        name="one-line errors",
        changes="sys.excepthook",
        what="an uncaught S2SFTError (or an exception raised from one) prints 's2sft-fairseq: error: "
             "<message>' on one line and exits with status 1; every other exception keeps the previous "
             "hook's report (S2SFT_TRACEBACK=1 shows the traceback for user errors too)",
        why="the fairseq command-line tools have no error reporting of their own: a user's mistake "
            "(a dictionary that does not match the checkpoint, a truncated file) would end in a traceback "
            "through fairseq's internals",
        relies_on=(),
        install=errors.install_excepthook,
        installed=errors.excepthook_installed,
        when=ON_FAIRSEQ_CLI,
    ),
)


def fairseq_cli_running() -> bool:
    """Whether the running program is one of fairseq's command-line tools (see the module docs)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and (spec.name or "").startswith("fairseq_cli."):
        return True  # python -m fairseq_cli.train
    argv = getattr(sys, "argv", None) or [""]
    return os.path.basename(argv[0]) in FAIRSEQ_CONSOLE_SCRIPTS


def _resolve(target: str):
    module_name, _, path = target.partition(":")
    obj = importlib.import_module(module_name)
    for attr in path.split("."):
        obj = getattr(obj, attr)
    return obj


def mismatch(patch: Patch) -> Optional[str]:
    """Why ``patch`` does not fit the installed fairseq / torch, or ``None`` when it does."""
    for target, params in patch.relies_on:
        try:
            obj = _resolve(target)
        except (ImportError, AttributeError):
            return f"{target} does not exist"
        if params is None:
            continue
        try:
            found = tuple(inspect.signature(obj).parameters)
        except (TypeError, ValueError):
            return f"{target} has no inspectable signature"
        if found != params:
            return f"{target} takes ({', '.join(found)}), the patch expects ({', '.join(params)})"
    return None


def check_fairseq_version(version: Optional[str] = None) -> bool:
    """True for the targeted fairseq series; otherwise warn once per call and return False."""
    version = fairseq.__version__ if version is None else version
    if version == TARGET_FAIRSEQ or version.startswith(TARGET_FAIRSEQ + "."):
        return True
    warnings.warn(f"s2sft_fairseq: fairseq {version} is installed, but the plugin's fairseq patches target "
                  f"fairseq {TARGET_FAIRSEQ}.x (see s2sft_fairseq/fairseq_patches.py); each patch is checked "
                  "against the installed functions and skipped if they changed", FairseqPatchWarning, stacklevel=2)
    return False


def install(patches: Tuple[Patch, ...] = PATCHES) -> None:
    """Install every patch whose time has come and whose attributes fit (idempotent)."""
    check_fairseq_version()
    under_cli = fairseq_cli_running()
    for patch in patches:
        if patch.when == ON_FAIRSEQ_CLI and not under_cli:
            continue
        why_not = mismatch(patch)
        if why_not is not None:
            warnings.warn(f"s2sft_fairseq: not installing the fairseq patch {patch.name!r} ({patch.changes}): "
                          f"{why_not}", FairseqPatchWarning, stacklevel=2)
            continue
        patch.install()
