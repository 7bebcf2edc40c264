"""One-line errors for fairseq checkpoint files that cannot be read (``--path``, ``--restore-file``).

fairseq's ``checkpoint_utils.load_checkpoint_to_cpu`` (used by fairseq-generate, -interactive,
-validate and by fairseq-train when it resumes) calls ``torch.load`` on the file; a truncated or
corrupt file, a pickle that needs a global outside the allow-list of :mod:`.safe_loading` (e.g.
one that would run ``os.system``) or a path that cannot be opened end in a long traceback.
:func:`install_read_guard` wraps that function (and :func:`install_not_found_guard` fairseq's
"Model file not found" check in ``load_model_ensemble_and_task``; both listed in
:mod:`.fairseq_patches`) so that these failures are re-raised as :class:`CheckpointFileError`
naming the file; the excepthook of :mod:`.errors` prints it as ``s2sft-fairseq: error: <path>: ...``
and exits with status 1.

Only failures *of reading the file* are converted: an ``OSError`` from opening it, an exception
raised inside ``torch.load`` (its frames are in ``torch.serialization``), fairseq's own
"Model file not found", and a ``KeyError`` raised directly in fairseq's ``_upgrade_state_dict``
(a torch file that is not a fairseq checkpoint). Anything else raised by fairseq's loader (e.g.
while upgrading an old checkpoint's config) keeps its traceback; ``S2SFT_TRACEBACK=1`` shows the
traceback (and the original exception) for the converted ones too. Nothing here loosens what is loaded: fairseq's
``torch.load`` call still runs with torch's default ``weights_only=True``, so a pickle that would
run code is refused before any of it runs; the wrapper only rewords the refusal, in the words
:func:`.safe_loading.describe_load_failure` uses for the importer too.
"""
import functools

from fairseq import checkpoint_utils

from .errors import S2SFTError
from .safe_loading import describe_load_failure


class CheckpointFileError(S2SFTError):
    """A fairseq checkpoint file that cannot be opened, read or trusted."""


class CheckpointNotFoundError(CheckpointFileError, FileNotFoundError):
    """No file at the checkpoint path (still the ``OSError`` fairseq raised, for callers that catch it)."""


def _raised_in_torch_load(exc: BaseException) -> bool:
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "torch.serialization":
            return True
        tb = tb.tb_next
    return False


def _is_read_failure(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and getattr(exc, "filename", None) is not None:
        return True  # open() of the checkpoint: missing, a directory, no permission
    return _raised_in_torch_load(exc)


def _is_not_fairseq_checkpoint(exc: BaseException) -> bool:
    """fairseq's ``_upgrade_state_dict`` indexes entries every fairseq checkpoint has (``best_loss``
    when there is no ``optimizer_history``...): a ``KeyError`` raised right there means the file
    is some other torch pickle (e.g. a bare state dict or a Hugging Face ``pytorch_model.bin``)."""
    if not isinstance(exc, KeyError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    frame = tb.tb_frame if tb is not None else None
    return (frame is not None and frame.f_code.co_name == "_upgrade_state_dict"
            and frame.f_globals.get("__name__") == "fairseq.checkpoint_utils")


def _guard_load_checkpoint_to_cpu(original):
    @functools.wraps(original)
    def load_checkpoint_to_cpu(path, *args, **kwargs):
        try:
            return original(path, *args, **kwargs)
        except S2SFTError:
            raise
        except Exception as e:
            if _is_read_failure(e):
                cls = CheckpointNotFoundError if isinstance(e, FileNotFoundError) else CheckpointFileError
                raise cls(describe_load_failure(str(path), e)) from e
            if _is_not_fairseq_checkpoint(e):
                raise CheckpointFileError(
                    f"{path}: not a fairseq checkpoint (fairseq's loader finds no {e.args[0]!r} entry); --path "
                    "and --restore-file take a checkpoint written by fairseq-train (a Hugging Face / pretrained "
                    "model goes to --pretrained-checkpoint)") from e
            raise

    load_checkpoint_to_cpu.__s2sft_guard__ = True
    return load_checkpoint_to_cpu


def _guard_load_model_ensemble_and_task(original):
    @functools.wraps(original)
    def load_model_ensemble_and_task(filenames, *args, **kwargs):
        try:
            return original(filenames, *args, **kwargs)
        except OSError as e:
            # fairseq: raise IOError("Model file not found: {}".format(filename))
            msg = str(e)
            if isinstance(e, S2SFTError) or not msg.startswith("Model file not found: "):
                raise
            path = msg[len("Model file not found: "):]
            raise CheckpointNotFoundError(f"{path}: checkpoint file not found (--path)") from e

    load_model_ensemble_and_task.__s2sft_guard__ = True
    return load_model_ensemble_and_task


def installed() -> bool:
    return getattr(checkpoint_utils.load_checkpoint_to_cpu, "__s2sft_guard__", False)


def install_read_guard() -> None:
    """Wrap ``checkpoint_utils.load_checkpoint_to_cpu`` (idempotent; see :mod:`.fairseq_patches`)."""
    if not installed():
        checkpoint_utils.load_checkpoint_to_cpu = _guard_load_checkpoint_to_cpu(
            checkpoint_utils.load_checkpoint_to_cpu)


def install_not_found_guard() -> None:
    """Wrap ``checkpoint_utils.load_model_ensemble_and_task`` (idempotent; see :mod:`.fairseq_patches`)."""
    if not getattr(checkpoint_utils.load_model_ensemble_and_task, "__s2sft_guard__", False):
        checkpoint_utils.load_model_ensemble_and_task = _guard_load_model_ensemble_and_task(
            checkpoint_utils.load_model_ensemble_and_task)


__all__ = ["CheckpointFileError", "CheckpointNotFoundError", "install_not_found_guard", "install_read_guard",
           "installed"]
