"""Checkpoints users already hold keep working (issue "one home per algorithm", item 8).

``tests/fixtures/legacy/`` holds tiny checkpoints written by fairseq-train with the code before
the restructuring (their saved configs name the method as a string, the model's under
``decoding_method``), and the ``H-`` lines fairseq-generate printed for them then
(``make_fixture.py`` says how they were made). Today's code must load them and decode the same
tokens with the same scores.
"""
import os

import pytest

from conftest import REPO, USER_DIR, run_cli

FIXTURE = os.path.join(REPO, "tests", "fixtures", "legacy")
SYSTEMS = ("pseudo_masked", "masked", "causal", "bert2bert")


def hypotheses(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("H-"):
            key, score, tokens = line.split("\t")
            out[key] = (float(score), tokens)
    return out


@pytest.mark.parametrize("beam", [1, 3])
@pytest.mark.parametrize("name", SYSTEMS)
def test_legacy_checkpoint_decodes_the_same_tokens(name, beam, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    proc = run_cli("fairseq-generate", os.path.join(FIXTURE, "data"), "--user-dir", USER_DIR,
                   "--task", "pseudo_masked_lm", "--cpu", "--max-source-positions", "24",
                   "--max-target-positions", "16", "--path", os.path.join(FIXTURE, f"{name}.pt"),
                   "--gen-subset", "test", "--beam", beam, "--batch-size", 5, "--max-len-b", 12)
    with open(os.path.join(FIXTURE, "expected", f"{name}.beam{beam}.txt"), encoding="utf-8") as f:
        expected = hypotheses(f.read())
    got = hypotheses(proc.stdout)
    assert len(expected) == 12 and got.keys() == expected.keys()
    for key, (score, tokens) in expected.items():
        assert got[key][1] == tokens, f"{name} beam {beam} {key}: {got[key][1]!r} != {tokens!r}"
        assert abs(got[key][0] - score) < 1e-4, f"{name} beam {beam} {key}: score {got[key][0]} != {score}"
