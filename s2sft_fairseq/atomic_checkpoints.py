"""Crash-safe checkpoint copies for fairseq-train.

fairseq writes the first checkpoint of a save atomically (``.tmp`` + rename) but then *copies*
it to the others — ``checkpoint_last.pt`` included — with a plain ``shutil.copyfile``
(``checkpoint_utils.save_checkpoint`` → ``PathManager.copy``). A SIGKILL during that copy
leaves a truncated ``checkpoint_last.pt`` that the restart cannot load. Importing the plugin
makes local copies atomic (:mod:`.fairseq_patches` installs :func:`atomic_copy`): copy to a
temporary file in the same directory, fsync, then ``os.replace``; a kill leaves either the old
or the new file, never half of one.
"""
import os
import shutil
import tempfile

from fairseq.file_io import PathManager

_original_copy = PathManager.copy


def atomic_copy(src_path: str, dst_path: str, overwrite: bool = False) -> bool:
    if "://" in str(src_path) or "://" in str(dst_path):  # remote (ioPath) paths: fairseq's own copy
        return _original_copy(src_path, dst_path, overwrite)
    if not overwrite and os.path.exists(dst_path):
        return False
    folder = os.path.dirname(os.path.abspath(dst_path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(dst_path) + ".", suffix=".partial", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out, open(src_path, "rb") as inp:
            shutil.copyfileobj(inp, out, length=16 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst_path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return True


def installed() -> bool:
    return PathManager.copy is atomic_copy


def install() -> None:
    PathManager.copy = staticmethod(atomic_copy)
