"""Hostile input through the real command-line tools (issue 7).

Every case ends in one of two ways: the tool works and logs what it did to the input (skipped,
truncated), or it stops with exit status 1 and one line ``s2sft-fairseq: error: ...`` (or
``s2sft-prepare: error: ...``) naming the file, line, token or tensor. Never a traceback, never a
silent shift of source/target pairs. Cases already covered by ``tests/test_prepare.py`` (line-count
mismatch, invalid UTF-8 byte, empty lines, strict mode, JSON errors) are not repeated here.

One module-scoped run of ``s2sft-prepare`` on a corpus with 100k-character lines, control
characters and empty lines, and one ``fairseq-train`` of ``unilm_seq2seq_tiny`` on it (2 updates),
serve the data- and checkpoint-level cases. Subprocess tests are marked ``slow``.
"""
import json
import os
import pickle
import random
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import BIN, REPO, USER_DIR

WORDS = "the cat dog sat ran on mat house big small red blue green tree sky".split()
TINY = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu", "--criterion",
        "s2s_label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "8",
        "--num-workers", "0", "--disable-validation", "--no-epoch-checkpoints", "--seed", "1",
        "--max-source-positions", "64", "--max-target-positions", "32"]
GEN = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu", "--beam", "1", "--max-len-b", "4",
       "--gen-subset", "train", "--batch-size", "8"]


def env():
    e = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    for var in ("S2SFT_TRACEBACK", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"):
        e.pop(var, None)
    return e


def cli(name, *args, input=None):
    return subprocess.run([os.path.join(BIN, name), *map(str, args)], env=env(), input=input,
                          capture_output=True, text=isinstance(input, (str, type(None))), timeout=600)


def one_line_error(proc, prefix="s2sft-fairseq: error: "):
    """The single error line of a failed CLI run (asserts exit 1, no traceback, exactly one such line)."""
    err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 1, f"exit {proc.returncode}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    lines = [ln for ln in err.splitlines() if ln.startswith(prefix)]
    assert len(lines) == 1, err[-3000:]
    assert err.rstrip().endswith(lines[0]), "the error is not the last thing printed"
    return lines[0][len(prefix):]


# ------------------------------------------------------------------------------ the hostile corpus
LONG_SRC = " ".join(random.Random(0).choice(WORDS) for _ in range(30000))[:100000]
LONG_TGT = ("y " * 50000)[:100000]
RAW_PAIRS = [
    ("a cat sat on the mat", "mat the on sat cat a"),
    (LONG_SRC, "long source"),                                     # 100k characters, ~20k tokens
    ("x" * 100000, LONG_TGT),                                      # one 100k-character "word"; long target
    ("ctrl\x00chars\x1b[1m here\x7f and c1\x85 next\x0cpage", "controls"),  # \x0c must not split the line
    ("\x00\x01\x1b\x7f", "dropped: the source is only control characters"),
    ("", "dropped: empty source"),
    ("red dog", "dog red"),
]
KEPT = [0, 1, 2, 3, 6]


@pytest.fixture(scope="module")
def prepared(minilm, tmp_path_factory):
    """``s2sft-prepare`` on the hostile corpus: (data dir, stdout+stderr, seconds, peak RSS in MB)."""
    root = tmp_path_factory.mktemp("hostile")
    with open(root / "train.src", "w", encoding="utf-8") as fs, open(root / "train.tgt", "w", encoding="utf-8") as ft:
        for s, t in RAW_PAIRS:
            fs.write(s + "\n")
            ft.write(t + "\n")
    dest = root / "bin"
    out = root / "prepare.log"
    start = time.time()
    with open(out, "w") as log:
        p = subprocess.Popen([os.path.join(BIN, "s2sft-prepare"), "--pretrained", minilm, "--trainpref",
                              str(root / "train"), "--destdir", str(dest), "--keep-tokenized"],
                             stdout=log, stderr=subprocess.STDOUT, env=env())
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.time() - start
    text = out.read_text()
    assert p.returncode == 0, text[-3000:]
    return str(dest), text, seconds, usage.ru_maxrss / 1024


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    """A tiny checkpoint trained 2 updates on the hostile corpus: (checkpoint path, train log)."""
    save = tmp_path_factory.mktemp("hostile_ckpt")
    proc = cli("fairseq-train", prepared[0], *TINY, "--arch", "unilm_seq2seq_tiny", "--max-update", "2",
               "--save-dir", save)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(save / "checkpoint_last.pt"), proc.stdout + proc.stderr


def linked_copy(src_dir, dst_dir, replace=()):
    """A checkpoint directory whose files are symlinks to ``src_dir`` except those in ``replace``."""
    os.makedirs(dst_dir, exist_ok=True)
    for name in os.listdir(src_dir):
        if name not in replace:
            os.symlink(os.path.join(src_dir, name), os.path.join(dst_dir, name))
    return str(dst_dir)


# ------------------------------------------------------------------------------ s2sft-prepare
@pytest.mark.slow
def test_prepare_100k_character_lines_control_chars_and_empty_lines(prepared, minilm):
    from fairseq.data import data_utils
    from transformers import AutoTokenizer

    from s2sft_fairseq.checkpoints.vocab import load_task_dictionary
    from s2sft_fairseq.text import clean_text

    dest, log, seconds, peak_mb = prepared
    assert seconds < 180, f"s2sft-prepare took {seconds:.0f}s on 7 lines"
    assert peak_mb < 2000, f"s2sft-prepare peaked at {peak_mb:.0f} MB"
    assert "[train] 5 of 7 pairs kept, 2 skipped (empty source or target)" in log
    tok = AutoTokenizer.from_pretrained(minilm, local_files_only=True)
    d = load_task_dictionary(os.path.join(dest, "dict.src.txt"))
    src = data_utils.load_indexed_dataset(os.path.join(dest, "train.src-tgt.src"), d, "mmap")
    tgt = data_utils.load_indexed_dataset(os.path.join(dest, "train.src-tgt.tgt"), d, "mmap")
    assert len(src) == len(tgt) == len(KEPT)
    for row, i in enumerate(KEPT):  # every kept row is still its own pair, in order
        for side, ds in ((0, src), (1, tgt)):
            expected = tok.convert_tokens_to_ids(tok.tokenize(clean_text(RAW_PAIRS[i][side]))) + [d.eos()]
            assert ds[row].tolist() == expected, (i, side)
    assert len(src[1]) > 15000  # the long line is kept whole (the model truncates, see below)
    assert src[2].tolist() == [d.unk(), d.eos()]  # 100k characters without a space: one [UNK]
    assert d.string(src[3]).endswith(" here and c1 next page")  # controls became spaces, \x0c split no line


def test_prepare_max_tokens_per_line_truncates_and_counts(tmp_path, minilm):
    from preprocess import prepare

    with open(tmp_path / "train.src", "w", encoding="utf-8") as fs, open(tmp_path / "train.tgt", "w") as ft:
        fs.write(f"a cat\n{LONG_SRC}\nred dog\n")
        ft.write(f"cat a\nlong\n{LONG_TGT}\n")
    args = prepare.build_parser().parse_args(["--pretrained", minilm, "--trainpref", str(tmp_path / "train"),
                                              "--destdir", str(tmp_path / "bin"), "--max-tokens-per-line", "128"])
    stats = prepare.prepare(args)["train"]
    assert (stats.total, stats.kept) == (3, 3)
    assert stats.truncated == {"src": 1, "tgt": 1}
    assert "src truncated: 1, tgt truncated: 1" in stats.summary()


@pytest.mark.slow
def test_train_truncates_long_lines_and_logs_it(trained):
    _, log = trained
    assert "Traceback" not in log
    assert re.search(r"truncated 1 of 5 sources to 64 tokens and 1 targets to 32 tokens \(nothing dropped\)", log), \
        log[-3000:]


# ------------------------------------------------------------------------------ binarized data
@pytest.mark.slow
def test_binarized_source_and_target_with_different_counts(prepared, tmp_path):
    from fairseq.data import indexed_dataset

    data = shutil.copytree(prepared[0], tmp_path / "bin")
    prefix = str(data / "train.src-tgt.tgt")
    builder = indexed_dataset.make_builder(prefix + ".bin", impl="mmap", vocab_size=30522)
    for ids in ([2000, 102], [2001, 102], [2002, 102]):  # 3 targets for 5 sources
        builder.add_item(torch.IntTensor(ids))
    builder.finalize(prefix + ".idx")
    proc = cli("fairseq-train", data, *TINY, "--arch", "unilm_seq2seq_tiny", "--max-update", "1",
               "--save-dir", tmp_path / "save")
    msg = one_line_error(proc)
    assert msg.startswith(f"{data}/train.src-tgt.src.bin has 5 examples but {data}/train.src-tgt.tgt.bin has 3: "), msg


def test_dataset_count_mismatch_and_bad_limits_are_user_errors():
    from s2sft_fairseq.data import PairedExamplesDataset
    from s2sft_fairseq.errors import S2SFTError
    from s2sft_fairseq.tasks.inference_data import TokensDataset

    d = small_dictionary()
    two = TokensDataset([torch.LongTensor([5, 2]), torch.LongTensor([6, 2])])
    one = TokensDataset([torch.LongTensor([7, 2])])
    with pytest.raises(S2SFTError, match=r"x:train: source has 2 examples but target has 1"):
        PairedExamplesDataset(two, one, d, "pseudo_masked", 16, 8, name="x:train")
    with pytest.raises(S2SFTError, match=r"--max-source-positions 2 .*>= 3"):
        PairedExamplesDataset(two, two, d, "pseudo_masked", 2, 8)


def small_dictionary():
    from s2sft_fairseq.checkpoints.vocab import CheckpointDictionary
    return CheckpointDictionary(["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] + [f"w{i}" for i in range(20)])


def test_max_tokens_below_an_example_size():
    """Outside training an over-long example gets a batch of its own; in training it is one line."""
    from s2sft_fairseq.data import PairedExamplesDataset
    from s2sft_fairseq.errors import S2SFTError
    from s2sft_fairseq.tasks.inference_data import TokensDataset

    d = small_dictionary()
    lengths = [3, 12, 4, 20, 5]
    src = TokensDataset([torch.LongTensor([6] * n + [2]) for n in lengths])
    tgt = TokensDataset([torch.LongTensor([7, 8, 2]) for _ in lengths])
    ds = PairedExamplesDataset(src, tgt, d, "pseudo_masked", 64, 8, shuffle=False, name="toy:test")
    batches = ds.batch_by_size(ds.ordered_indices(), max_tokens=12)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert [len(b) for b in batches if any(ds.num_tokens(i) > 12 for i in b)] == [1] * 3
    ds.is_train = True
    with pytest.raises(S2SFTError, match=r"toy:test: --max-tokens 12 is smaller than 3 training example\(s\); "
                                         r"the longest, example 3, needs 28 tokens"):
        ds.batch_by_size(ds.ordered_indices(), max_tokens=12)


def test_training_keeps_the_batch_fairseq_drops_for_required_batch_size_multiple():
    """fairseq 0.12 drops a last batch that is not a multiple of --required-batch-size-multiple
    (default 8): always the longest examples, as indices are sorted by size. They are kept."""
    from fairseq.data import data_utils

    from s2sft_fairseq.data import PairedExamplesDataset
    from s2sft_fairseq.tasks.inference_data import TokensDataset

    d = small_dictionary()
    rng = np.random.default_rng(0)
    for n in (5, 13, 101):
        src = TokensDataset([torch.LongTensor([6] * int(rng.integers(1, 30)) + [2]) for _ in range(n)])
        ds = PairedExamplesDataset(src, src, d, "pseudo_masked", 64, 32, shuffle=True)
        ds.is_train = True
        for max_tokens, max_sentences in ((None, 8), (200, None), (100, 16)):
            order = ds.ordered_indices()
            stock = data_utils.batch_by_size(order, ds.num_tokens, num_tokens_vec=ds.num_tokens_vec(order),
                                             max_tokens=max_tokens, max_sentences=max_sentences,
                                             required_batch_size_multiple=8)
            ours = ds.batch_by_size(order, max_tokens, max_sentences, 8)
            assert sorted(i for b in ours for i in b) == list(range(n))
            assert [list(b) for b in ours[:len(stock)]] == [list(b) for b in stock]  # only appended
            assert sum(len(b) for b in stock) < n  # (fairseq does lose some here)


def test_select_shard_keeps_contiguous_blocks_and_ids():
    from s2sft_fairseq.data import PairedExamplesDataset
    from s2sft_fairseq.errors import S2SFTError
    from s2sft_fairseq.tasks.inference_data import TokensDataset

    d = small_dictionary()
    src = TokensDataset([torch.LongTensor([6] * (1 + i % 4) + [2]) for i in range(10)])
    seen = []
    for k in range(3):
        ds = PairedExamplesDataset(src, src, d, "causal", 64, 8, shuffle=False)
        ds.select_shard(3, k)
        ids = ds.ordered_indices().tolist()
        assert len(ds) == 10 and sorted(ids) == list(range([0, 4, 7][k], [4, 7, 10][k]))
        seen += [i for b in ds.batch_by_size(np.asarray(ids), max_sentences=2) for i in b]
    assert sorted(seen) == list(range(10))
    with pytest.raises(S2SFTError, match="--shard-id 3 with --num-shards 3"):
        ds.select_shard(3, 3)


# ------------------------------------------------------------------------------ pretrained checkpoints
def train_with_pretrained(data, pretrained, tmp_path):
    return cli("fairseq-train", data, *TINY, "--arch", "unilm_seq2seq", "--pretrained-checkpoint", pretrained,
               "--max-update", "1", "--save-dir", tmp_path / "save")


@pytest.mark.slow
def test_dictionary_that_does_not_match_the_checkpoint(prepared, minilm, tmp_path):
    """Binarize the tokenized corpus with a dictionary whose row 5 is renamed, then fine-tune MiniLM."""
    from preprocess.binarize import preprocess_args, register_plugin, run_fairseq_preprocess

    tokenized = os.path.join(prepared[0], "tokenized")  # --keep-tokenized
    lines = open(os.path.join(tokenized, "dict.txt"), encoding="utf-8").read().split("\n")
    assert lines[6 + 5] == "[unused4] 1"  # header + 5 "#special" lines, then row 0..
    lines[6 + 5] = "[bogus4] 1"
    bad_dict = tmp_path / "dict.txt"
    bad_dict.write_text("\n".join(lines), encoding="utf-8")
    register_plugin()
    run_fairseq_preprocess(preprocess_args(str(tmp_path / "bin"), str(bad_dict), "src", "tgt",
                                           os.path.join(tokenized, "train"), None, None, 1))
    msg = one_line_error(train_with_pretrained(tmp_path / "bin", minilm, tmp_path))
    assert "dictionary does not match the checkpoint at index 5: data has '[bogus4]', checkpoint has '[unused4]'" \
        in msg, msg


@pytest.mark.slow
def test_config_that_does_not_fit_the_weights(prepared, minilm, tmp_path):
    folder = linked_copy(minilm, tmp_path / "ckpt", replace=("config.json",))
    cfg = json.load(open(os.path.join(minilm, "config.json")))
    cfg["intermediate_size"] = 1024
    json.dump(cfg, open(os.path.join(folder, "config.json"), "w"))
    msg = one_line_error(train_with_pretrained(prepared[0], folder, tmp_path))
    assert msg.startswith(f"{folder}/model.safetensors: tensor 'encoder.layer.0.intermediate.dense.bias' "
                          f"(stack: 'layers.0.ffn_in.bias') has shape (1536,), but {folder}/config.json implies "
                          "(1024,)"), msg


@pytest.mark.slow
def test_tensor_with_the_wrong_shape(prepared, minilm, tmp_path):
    from safetensors.torch import load_file, save_file

    folder = linked_copy(minilm, tmp_path / "ckpt", replace=("model.safetensors",))
    state = load_file(os.path.join(minilm, "model.safetensors"))
    name = "encoder.layer.2.attention.self.key.weight"
    state[name] = state[name][:, :380].contiguous()
    save_file(state, os.path.join(folder, "model.safetensors"))
    del state
    try:
        msg = one_line_error(train_with_pretrained(prepared[0], folder, tmp_path))
    finally:
        os.remove(os.path.join(folder, "model.safetensors"))  # 90 MB
    assert msg.startswith(f"{folder}/model.safetensors: tensor '{name}' (stack: 'layers.2.key.weight') has shape "
                          f"(384, 380), but {folder}/config.json implies (384, 384)"), msg


@pytest.mark.slow
def test_truncated_safetensors(prepared, minilm, tmp_path):
    folder = linked_copy(minilm, tmp_path / "ckpt", replace=("model.safetensors",))
    with open(os.path.join(minilm, "model.safetensors"), "rb") as f, \
            open(os.path.join(folder, "model.safetensors"), "wb") as g:
        g.write(f.read(1 << 20))
    msg = one_line_error(train_with_pretrained(prepared[0], folder, tmp_path))
    assert msg.startswith(f"{folder}/model.safetensors: cannot read the safetensors file, it is truncated or "
                          "corrupt"), msg


@pytest.mark.slow
def test_pretrained_checkpoint_that_does_not_exist(prepared, tmp_path):
    missing = tmp_path / "no-such-checkpoint"
    msg = one_line_error(train_with_pretrained(prepared[0], missing, tmp_path))
    assert msg.startswith(f"pretrained checkpoint '{missing}' does not exist"), msg


# ------------------------------------------------------------------------------ fairseq checkpoints (--path)
@pytest.mark.slow
def test_truncated_fairseq_checkpoint(prepared, trained, tmp_path):
    truncated = tmp_path / "checkpoint_last.pt"
    data = open(trained[0], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    msg = one_line_error(cli("fairseq-generate", prepared[0], *GEN, "--path", truncated))
    assert msg == (f"{truncated}: cannot read the checkpoint: the file is truncated, corrupt or not a PyTorch "
                   "checkpoint (RuntimeError: PytorchStreamReader failed reading zip archive: failed finding "
                   "central directory)"), msg


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.slow
def test_pickle_that_would_run_code_is_refused(prepared, tmp_path):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _RunsCode(marker), "cfg": None}, evil)
    msg = one_line_error(cli("fairseq-generate", prepared[0], *GEN, "--path", evil))
    assert not marker.exists(), "the pickle ran code"
    assert msg.startswith(f"{evil}: refused to load the checkpoint: it needs the Python global 'posix.system', "
                          "which is not allow-listed"), msg
    assert "weights_only` set to `False`" not in msg  # never advise switching the check off


def test_guard_converts_read_failures_only(tmp_path, monkeypatch):
    """In-process: what the guard turns into one line, and that a genuine bug keeps its exception."""
    import s2sft_fairseq  # noqa: F401  (installs the guard)
    from fairseq import checkpoint_utils

    from s2sft_fairseq import checkpoint_guard
    from s2sft_fairseq.checkpoint_guard import CheckpointFileError

    assert checkpoint_guard.installed()
    marker = tmp_path / "PWNED"
    raw = tmp_path / "raw.pkl"  # a plain (non-zip) pickle, as torch.save(_use_new_zipfile_serialization=False)
    with open(raw, "wb") as f:
        pickle.dump({"model": _RunsCode(marker)}, f, protocol=2)
    (tmp_path / "empty.pt").write_bytes(b"")
    torch.save({"w": torch.zeros(2)}, tmp_path / "bare.pt")
    cases = {
        raw: r"refused to load the checkpoint: it needs the Python global '(posix|os)\.system'",
        tmp_path / "empty.pt": r"truncated, corrupt or not a PyTorch checkpoint \(EOFError\)",
        tmp_path: r"cannot open the checkpoint \(Is a directory\)",
        tmp_path / "bare.pt": r"not a fairseq checkpoint \(fairseq's loader finds no 'best_loss' entry\)",
    }
    for path, pattern in cases.items():
        with pytest.raises(CheckpointFileError, match=re.escape(str(path)) + ": .*" + pattern):
            checkpoint_utils.load_checkpoint_to_cpu(str(path))
    assert not marker.exists()

    good = tmp_path / "good.pt"
    torch.save({"model": {}, "args": None, "cfg": None, "optimizer_history": [], "extra_state": {}}, good)

    def buggy(state):
        raise RuntimeError("a genuine bug")
    monkeypatch.setattr(checkpoint_utils, "_upgrade_state_dict", buggy)
    with pytest.raises(RuntimeError, match="a genuine bug") as info:
        checkpoint_utils.load_checkpoint_to_cpu(str(good))
    assert not isinstance(info.value, CheckpointFileError)


def test_generate_path_that_does_not_exist(tmp_path):
    """fairseq's own "Model file not found" (raised before anything is loaded), as one line."""
    import s2sft_fairseq  # noqa: F401
    from fairseq import checkpoint_utils

    from s2sft_fairseq.checkpoint_guard import CheckpointFileError

    with pytest.raises(CheckpointFileError) as info:
        checkpoint_utils.load_model_ensemble([str(tmp_path / "nope.pt")])
    assert str(info.value) == f"{tmp_path}/nope.pt: checkpoint file not found (--path)"
    assert isinstance(info.value, OSError)  # still what fairseq raised, for callers that catch it


def test_excepthook_prints_one_line_and_keeps_tracebacks_for_bugs(tmp_path):
    """errors.py alone (no fairseq import): user errors -> one line; bugs and S2SFT_TRACEBACK=1 -> traceback."""
    script = tmp_path / "hook.py"
    script.write_text(f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("errors", {os.path.join(REPO, "s2sft_fairseq", "errors.py")!r})
errors = importlib.util.module_from_spec(spec); spec.loader.exec_module(errors)
errors.install_excepthook()
if sys.argv[1] == "user":
    try:
        raise KeyError("x")
    except KeyError as e:
        raise errors.S2SFTError("f.pt: bad\\nsecond line") from e
raise KeyError("a bug")
""")
    def run(kind, **extra):
        return subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True,
                              env={**env(), **extra}, timeout=60)
    user = run("user")
    assert (user.returncode, user.stderr) == (1, "s2sft-fairseq: error: f.pt: bad second line\n")
    bug = run("bug")
    assert bug.returncode == 1 and "Traceback" in bug.stderr and "KeyError: 'a bug'" in bug.stderr
    debug = run("user", S2SFT_TRACEBACK="1")
    assert "Traceback" in debug.stderr and "KeyError: 'x'" in debug.stderr


# ------------------------------------------------------------------------------ fairseq-interactive
@pytest.mark.slow
def test_interactive_long_empty_and_control_character_input(prepared, trained):
    lines = [" ".join(random.Random(1).choice(WORDS) for _ in range(2000)),  # > 64 positions
             "",
             LONG_SRC,                                                        # 100k characters
             "red \x1b[31mdog\x1b[0m \x00 nul \x85 c1",
             "sky"]
    proc = cli("fairseq-interactive", prepared[0], "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu",
               "--path", trained[0], "--beam", "1", "--max-len-b", "4", "--max-source-positions", "64",
               "--buffer-size", "5", "--batch-size", "5", input="\n".join(lines) + "\n")
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    src = {int(ln.split("\t")[0][2:]): ln.split("\t")[1] if "\t" in ln else "" for ln in proc.stdout.splitlines()
           if ln.startswith("S-")}
    hyps = sorted(int(ln.split("\t")[0][2:]) for ln in proc.stdout.splitlines() if ln.startswith("H-"))
    assert hyps == list(range(len(lines))), proc.stdout[-2000:]
    assert len(src[0].split()) == 62 and len(src[2].split()) == 62  # 64 positions minus [CLS] and [SEP]
    assert src[0].split() == lines[0].split()[:62]  # truncated at the end, not shifted
    assert src[4] == "sky"
    assert re.search(r"WARNING.*2 of 5 input\(s\) are longer than --max-source-positions 64", proc.stderr)


@pytest.mark.slow
def test_interactive_invalid_utf8_on_stdin(prepared, trained):
    proc = cli("fairseq-interactive", prepared[0], "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu",
               "--path", trained[0], "--beam", "1", "--max-len-b", "4",
               input=b"red \xed\xa0\x80 dog\nbad \xff byte\nsky\n")
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err[-2000:]
    if proc.returncode == 0:
        hyps = [int(ln.split(b"\t")[0][2:]) for ln in proc.stdout.splitlines() if ln.startswith(b"H-")]
        assert sorted(hyps) == [0, 1, 2]
    else:
        one_line_error(proc)
