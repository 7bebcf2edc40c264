"""Pretrained checkpoints by hub name from the local Hugging Face cache (issue 14, item 4).

A fake cache entry is built the way ``huggingface_hub`` lays one out (content-addressed blobs, a
snapshot folder of links to them, ``refs/main`` naming the snapshot) in a temporary ``HF_HOME``,
holding a tiny BERT from ``checkpoint_factory``. Oracle: reading the same files by path.
"""
import hashlib
import json
import os
import subprocess
import types

import pytest
import torch

import checkpoint_factory as cf
from conftest import BIN
from s2sft_fairseq.checkpoints import CheckpointError, load_pretrained
from s2sft_fairseq.checkpoints.hub_names import resolve_pretrained_path

REPO_ID = "tiny-org/tiny-bert"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def fake_hub_cache(hf_home, repo_id, src_dir, revision=REVISION):
    """``hf_home/hub/models--org--name/{blobs,snapshots/<revision>,refs/main}`` holding ``src_dir``'s files."""
    repo = os.path.join(hf_home, "hub", "models--" + repo_id.replace("/", "--"))
    snapshot = os.path.join(repo, "snapshots", revision)
    os.makedirs(os.path.join(repo, "blobs"))
    os.makedirs(snapshot)
    os.makedirs(os.path.join(repo, "refs"))
    for name in sorted(os.listdir(src_dir)):
        with open(os.path.join(src_dir, name), "rb") as f:
            content = f.read()
        blob = hashlib.sha256(content).hexdigest()
        with open(os.path.join(repo, "blobs", blob), "wb") as f:
            f.write(content)
        os.symlink(os.path.join("..", "..", "blobs", blob), os.path.join(snapshot, name))
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(revision)
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """A private HF_HOME with REPO_ID cached; huggingface_hub (imported already) reads its cache
    folder from ``constants.HF_HUB_CACHE``, so that is pointed there too for in-process calls."""
    from huggingface_hub import constants
    home = str(tmp_path / "hf_home")
    snapshot = fake_hub_cache(home, REPO_ID, cf.get("bert")[0])
    monkeypatch.setenv("HF_HOME", home)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", os.path.join(home, "hub"))
    return types.SimpleNamespace(home=home, snapshot=snapshot)


def test_hub_name_resolves_to_the_cached_snapshot(hf_home):
    assert resolve_pretrained_path(REPO_ID) == hf_home.snapshot
    by_name, by_path = load_pretrained(REPO_ID), load_pretrained(cf.get("bert")[0])
    assert by_name.path == hf_home.snapshot and by_name.family == by_path.family
    assert list(by_name.dictionary.symbols) == list(by_path.dictionary.symbols)
    assert by_name.state_dict.keys() == by_path.state_dict.keys()
    assert all(torch.equal(by_name.state_dict[k], by_path.state_dict[k]) for k in by_path.state_dict)


def test_missing_name_names_the_cache_folder_it_looked_in(hf_home):
    folder = os.path.join(hf_home.home, "hub", "models--tiny-org--absent")
    with pytest.raises(CheckpointError, match=f"'tiny-org/absent' is not a path, and not a model in the local "
                                              f"Hugging Face cache either: looked in {folder}"):
        load_pretrained("tiny-org/absent")


def test_an_existing_path_shaped_like_a_name_stays_a_path(hf_home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cf.copy_of("bert", str(tmp_path / "tiny-org" / "tiny-bert"))
    assert resolve_pretrained_path(REPO_ID) == REPO_ID
    assert load_pretrained(REPO_ID).path == REPO_ID
    assert resolve_pretrained_path("./not/there") == "./not/there"  # not a name: the format error follows


def test_pretrained_checkpoint_option_warm_starts_from_a_hub_name(hf_home):
    """``--pretrained-checkpoint org/name`` (the model config field) builds the same stack as the path."""
    import fairseq.models
    from omegaconf import OmegaConf
    dictionary = load_pretrained(REPO_ID).dictionary

    def build(name):
        root = OmegaConf.create({
            "task": {"_name": "pseudo_masked_lm", "max_source_positions": 24, "max_target_positions": 16},
            "model": {"_name": "unilm_seq2seq", "pretrained_checkpoint": name}})
        task = types.SimpleNamespace(source_dictionary=dictionary, target_dictionary=dictionary,
                                     cfg=types.SimpleNamespace(ft_method="pseudo_masked"))
        return fairseq.models.build_model(root.model, task).state_dict()

    a, b = build(REPO_ID), build(cf.get("bert")[0])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def run_tool(name, *args, hf_home):
    env = dict(os.environ, HF_HOME=hf_home, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([os.path.join(BIN, name), *args], env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_s2sft_import_accepts_a_hub_name_offline(hf_home):
    proc = run_tool("s2sft-import", "--pretrained", REPO_ID, "--inspect", hf_home=hf_home.home)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"checkpoint:   {hf_home.snapshot}" in proc.stdout and "family:       bert" in proc.stdout
    proc = run_tool("s2sft-import", "--pretrained", "tiny-org/absent", "--inspect", hf_home=hf_home.home)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("s2sft-import: error: pretrained checkpoint "
                                                           "'tiny-org/absent' is not a path")
    assert os.path.join(hf_home.home, "hub", "models--tiny-org--absent") in proc.stderr


def test_s2sft_prepare_accepts_a_hub_name_and_records_the_snapshot(hf_home, tmp_path):
    from preprocess import prepare
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "train.src").write_text("the dog sat\nbako ridu\n")
    (raw / "train.tgt").write_text("on the mat\nsela mo\n")
    prepare.cli_main(["--pretrained", REPO_ID, "--trainpref", str(raw / "train"), "--destdir", str(tmp_path / "bin")])
    info = json.loads((tmp_path / "bin" / "pretrained.json").read_text())
    assert info["pretrained"] == hf_home.snapshot and info["hub_name"] == REPO_ID
    with pytest.raises(SystemExit, match=r"s2sft-prepare: error: --pretrained: pretrained checkpoint "
                                         r"'tiny-org/absent' is not a path.*models--tiny-org--absent"):
        prepare.cli_main(["--pretrained", "tiny-org/absent", "--trainpref", str(raw / "train"),
                          "--destdir", str(tmp_path / "bin2")])
