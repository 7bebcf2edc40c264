"""Binarize tokenized text with fairseq's own ``fairseq-preprocess``, using the checkpoint's dictionary.

The dictionary is built once from the checkpoint's tokenizer
(:func:`s2sft_fairseq.checkpoints.vocab.dictionary_from_tokenizer`), written as ``dict.txt`` in our
format, and handed to ``fairseq_cli.preprocess.main`` as ``--srcdict``/``--tgtdict`` with
``--task pseudo_masked_lm``: that task's ``load_dictionary`` reads our format back, and its
``save`` writes it again as ``dict.<lang>.txt`` into the data directory. :func:`check_saved_dictionary`
then verifies that the data directory's dictionaries are ours, row for row.
"""
import importlib.util
import logging
import os
from argparse import Namespace
from typing import List, Optional

from .text import DataError

logger = logging.getLogger(__name__)

TASK = "pseudo_masked_lm"  # its load_dictionary reads our dict.txt format back
# Located without importing it (that would pull in torch and fairseq).
PLUGIN_DIR = os.path.abspath(list(importlib.util.find_spec("s2sft_fairseq").submodule_search_locations)[0])


def register_plugin() -> None:
    """Import ``s2sft_fairseq`` as fairseq's ``--user-dir`` and make sure its tasks are registered.

    fairseq's ``import_user_module`` only imports ``tasks/`` and ``models/`` when the package is not
    yet in ``sys.modules``; here it already is (we import ``s2sft_fairseq.checkpoints``), so the
    task modules are imported explicitly. Importing them twice is harmless (module cache).
    """
    from fairseq import utils
    from fairseq.tasks import import_tasks

    utils.import_user_module(Namespace(user_dir=PLUGIN_DIR))
    tasks_dir = os.path.join(PLUGIN_DIR, "tasks")
    if os.path.isdir(tasks_dir):
        import_tasks(tasks_dir, "s2sft_fairseq.tasks")


def preprocess_args(
    destdir: str,
    dict_path: str,
    source_lang: str,
    target_lang: str,
    trainpref: Optional[str],
    validpref: Optional[str],
    testpref: Optional[str],
    workers: int,
    task: str = TASK,
) -> Namespace:
    """Parse the ``fairseq-preprocess`` command line we run, with fairseq's own parser."""
    from fairseq import options

    argv: List[str] = [
        "--user-dir", PLUGIN_DIR,
        "--task", task,
        "--source-lang", source_lang,
        "--target-lang", target_lang,
        "--srcdict", dict_path,
        "--tgtdict", dict_path,
        "--destdir", destdir,
        "--dataset-impl", "mmap",
        "--workers", str(workers),
    ]
    for flag, value in (("--trainpref", trainpref), ("--validpref", validpref), ("--testpref", testpref)):
        if value:
            argv += [flag, value]
    parser = options.get_preprocessing_parser()
    return parser.parse_args(argv)


def run_fairseq_preprocess(args: Namespace) -> None:
    """Run ``fairseq_cli.preprocess.main`` in-process (and detach the log file it attaches)."""
    from fairseq.tasks import TASK_REGISTRY
    from fairseq_cli import preprocess as fairseq_preprocess

    if args.task not in TASK_REGISTRY:
        raise DataError(f"fairseq task {args.task!r} is not registered (is s2sft_fairseq installed?)")
    plog = logging.getLogger("fairseq_cli.preprocess")
    before = list(plog.handlers)
    try:
        fairseq_preprocess.main(args)
    finally:
        for handler in plog.handlers[:]:
            if handler not in before:
                plog.removeHandler(handler)
                handler.close()


def check_saved_dictionary(path: str, expected) -> None:
    """Fail unless ``path`` is an s2sft dictionary with exactly the rows of ``expected``."""
    from s2sft_fairseq.checkpoints.vocab import HEADER, load_task_dictionary

    with open(path, "r", encoding="utf-8") as f:
        first = f.readline().strip()
    if first != HEADER:
        raise DataError(
            f"{path}: fairseq-preprocess wrote a stock fairseq dictionary (first line {first!r}); "
            f"the task's load_dictionary must return an s2sft CheckpointDictionary"
        )
    saved = load_task_dictionary(path)
    if saved.symbols != expected.symbols:
        i = next(i for i, (a, b) in enumerate(zip(saved.symbols + [None], expected.symbols + [None])) if a != b)
        raise DataError(f"{path}: row {i} differs from the checkpoint's vocabulary")
