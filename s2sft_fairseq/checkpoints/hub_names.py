"""Pretrained checkpoints by Hugging Face hub name, from the local cache only.

``--pretrained-checkpoint``, ``s2sft-import --pretrained`` and ``s2sft-prepare --pretrained``
accept a hub name (``org/name``) as well as a path: :func:`resolve_pretrained_path` turns a name
that is not an existing path into the directory of its snapshot in the local Hugging Face cache
(``$HF_HUB_CACHE``, by default ``$HF_HOME/hub``: ``models--org--name/snapshots/<revision>/``,
the revision named by ``refs/main``), with ``huggingface_hub.snapshot_download(...,
local_files_only=True)``. Nothing is downloaded, whatever ``HF_HUB_OFFLINE`` says: a name missing
from the cache is an error that names the cache folder looked in. The format dispatch
(:func:`.formats.load_pretrained`) then reads the snapshot like any other directory.
"""
import logging
import os
import re
from typing import Optional

from .common import CheckpointError

logger = logging.getLogger(__name__)

#: ``org/name`` as the hub spells repository ids (letters, digits, ``-``, ``_``, ``.``)
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def looks_like_hub_name(name_or_path: str) -> bool:
    return bool(name_or_path) and bool(HUB_NAME.match(name_or_path)) and ".." not in name_or_path


def hub_cache_dir(cache_dir: Optional[str] = None) -> str:
    """The hub cache folder ``huggingface_hub`` reads (``HF_HUB_CACHE`` / ``HF_HOME`` at its import)."""
    if cache_dir:
        return str(cache_dir)
    from huggingface_hub import constants
    return constants.HF_HUB_CACHE


def resolve_pretrained_path(name_or_path: str, cache_dir: Optional[str] = None) -> str:
    """``name_or_path`` itself when it exists on disk (or is not shaped like a hub name), else the
    local snapshot directory of the hub model ``org/name``; a :class:`CheckpointError` naming the
    cache folder looked in when the model is not in the local cache."""
    if not looks_like_hub_name(name_or_path) or os.path.exists(name_or_path):
        return name_or_path
    from huggingface_hub import snapshot_download
    folder = os.path.join(hub_cache_dir(cache_dir), "models--" + name_or_path.replace("/", "--"))
    try:
        path = snapshot_download(name_or_path, local_files_only=True, cache_dir=cache_dir)
    except Exception as e:  # LocalEntryNotFoundError, an invalid id, an unreadable refs file, ...
        raise CheckpointError(
            f"pretrained checkpoint {name_or_path!r} is not a path, and not a model in the local Hugging Face "
            f"cache either: looked in {folder} (set HF_HOME or HF_HUB_CACHE to use another cache; nothing is "
            f"downloaded: fetch the model once with network access, or give its directory) "
            f"[{type(e).__name__}]") from None
    logger.info(f"{name_or_path}: the cached snapshot {path}")
    return str(path)
