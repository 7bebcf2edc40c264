"""No data lost in generation (issue 7): every input id comes out exactly once, paired with its own
source and reference, whatever ``--batch-size``, ``--max-tokens`` or ``--num-shards/--shard-id``.

One tiny ``unilm_seq2seq_tiny`` checkpoint (one fairseq-train update) on a toy corpus whose test
split has 101 examples (a prime: no batch size or shard count divides it), decoded with beam 1 by
the real ``fairseq-generate``. fairseq 0.12's generate ignores ``--num-shards/--shard-id`` (it
shards by ``--distributed-world-size/--distributed-rank``), so without the task's own sharding
every "shard" would print all 101 sentences.
"""
import collections
import os
import subprocess

import pytest

from conftest import BIN, USER_DIR, make_toy_corpus

N_TEST = 101
COMMON = ["--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu", "--max-source-positions", "64",
          "--max-target-positions", "32"]


def cli(name, *args, input=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONWARNINGS="ignore")
    return subprocess.run([os.path.join(BIN, name), *map(str, args)], env=env, input=input,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def corpus(minilm, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("coverage"))
    data = make_toy_corpus(folder, minilm, sizes=(("train", 40), ("test", N_TEST)), seed=11)
    with open(os.path.join(folder, "test.src"), encoding="utf-8") as fs, \
            open(os.path.join(folder, "test.tgt"), encoding="utf-8") as ft:
        src, tgt = fs.read().split("\n")[:-1], ft.read().split("\n")[:-1]
    assert len(src) == len(tgt) == N_TEST
    return data, src, tgt


@pytest.fixture(scope="module")
def ckpt(corpus, tmp_path_factory):
    data = corpus[0]
    save = tmp_path_factory.mktemp("coverage_ckpt")
    proc = cli("fairseq-train", data, *COMMON, "--arch", "unilm_seq2seq_tiny", "--criterion",
               "s2s_label_smoothed_cross_entropy", "--optimizer", "adam", "--lr", "1e-4", "--batch-size", "16",
               "--max-update", "1", "--save-dir", save, "--num-workers", "0", "--disable-validation",
               "--no-epoch-checkpoints", "--seed", "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return str(save / "checkpoint_last.pt")


def generate(corpus, ckpt, *extra):
    proc = cli("fairseq-generate", corpus[0], *COMMON, "--path", ckpt, "--gen-subset", "test", "--beam", "1",
               "--max-len-b", "4", *extra)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return proc


def lines_by_id(stdout, kind):
    """[(id, text)] of the ``kind-<id>`` lines, in output order (duplicates kept)."""
    out = []
    for line in stdout.splitlines():
        if line.startswith(f"{kind}-"):
            head, _, rest = line.partition("\t")
            out.append((int(head[len(kind) + 1:]), rest.split("\t")[-1]))
    return out


def check_pairs(stdout, corpus):
    """Each S-/T- line shows the source / reference of its own id (no shifted pairs)."""
    _, src, tgt = corpus
    for kind, ref in (("S", src), ("T", tgt)):
        for i, text in lines_by_id(stdout, kind):
            assert text == ref[i], f"{kind}-{i}: {text!r} is not line {i + 1} ({ref[i]!r})"


@pytest.mark.slow
@pytest.mark.parametrize("flags", [("--batch-size", "8"), ("--batch-size", "7"), ("--max-tokens", "50"),
                                   ("--max-tokens", "16")], ids=lambda f: "".join(f).lstrip("-"))
def test_every_id_exactly_once(flags, corpus, ckpt):
    """``--max-tokens 16`` is below most examples' size (source + 2 x target): fairseq would stop
    with an assertion; each such example gets a batch of its own instead, with a warning."""
    proc = generate(corpus, ckpt, *flags)
    ids = [i for i, _ in lines_by_id(proc.stdout, "H")]
    counts = collections.Counter(ids)
    assert sorted(counts) == list(range(N_TEST)), f"missing: {sorted(set(range(N_TEST)) - set(counts))}"
    assert max(counts.values()) == 1, f"printed twice: {[i for i, c in counts.items() if c > 1]}"
    assert len(lines_by_id(proc.stdout, "D")) == N_TEST
    check_pairs(proc.stdout, corpus)
    if flags == ("--max-tokens", "16"):
        assert "batch of its own (nothing dropped)" in proc.stderr


@pytest.mark.slow
def test_num_shards_cover_every_id_exactly_once(corpus, ckpt):
    shards = []
    for shard_id in range(3):
        proc = generate(corpus, ckpt, "--batch-size", "8", "--num-shards", "3", "--shard-id", shard_id)
        ids = [i for i, _ in lines_by_id(proc.stdout, "H")]
        assert ids and len(ids) < N_TEST, f"shard {shard_id} printed {len(ids)} of {N_TEST} sentences"
        assert f"shard {shard_id} of 3: {len(ids)} of {N_TEST} examples" in proc.stderr
        check_pairs(proc.stdout, corpus)
        shards.append(ids)
    counts = collections.Counter(i for ids in shards for i in ids)
    assert sorted(counts) == list(range(N_TEST))
    assert max(counts.values()) == 1, f"in two shards: {[i for i, c in counts.items() if c > 1]}"
    # contiguous blocks: shard k's outputs concatenated in shard order are the corpus order
    assert [sorted(ids) for ids in shards] == [list(range(0, 34)), list(range(34, 68)), list(range(68, 101))]
