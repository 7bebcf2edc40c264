"""Loss invariances: padding side, batching, and per-example determinism of corruption."""
from types import SimpleNamespace

import pytest
import torch

from s2sft_fairseq.criterions.s2s_label_smoothed_cross_entropy import S2SLabelSmoothedCrossEntropy
from s2sft_fairseq.data import PairedExamplesDataset
from s2sft_fairseq.tasks.inference_data import TokensDataset
from tiny import tiny_model


def make_dataset(d, method, left_pad, n=6, seed=3):
    g = torch.Generator().manual_seed(seed)
    words = [d.index(f"w{i}") for i in range(40)]
    srcs, tgts = [], []
    for i in range(n):
        ls, lt = 2 + i % 4, 1 + (i * 3) % 5
        srcs.append(torch.tensor([words[k] for k in torch.randint(40, (ls,), generator=g)] + [d.eos()]))
        tgts.append(torch.tensor([words[k] for k in torch.randint(40, (lt,), generator=g)] + [d.eos()]))
    return PairedExamplesDataset(TokensDataset(srcs), TokensDataset(tgts), d, method, 32, 16,
                              target_mask_prob=0.5, seed=7, left_pad_source=left_pad, shuffle=False)


def loss_of(model, crit, ds, indices):
    sample = ds.collater([ds[i] for i in indices])
    loss, nll, _, n = crit.compute(model, sample)
    return loss.item(), n


@pytest.mark.parametrize("method", ["causal", "masked", "pseudo_masked"])
def test_left_and_right_padding_give_the_same_loss(method):
    model, d = tiny_model(method)
    crit = S2SLabelSmoothedCrossEntropy(SimpleNamespace(target_dictionary=d), 0.1)
    right, left = make_dataset(d, method, False), make_dataset(d, method, True)
    with torch.no_grad():
        lr, nr = loss_of(model, crit, right, range(len(right)))
        ll, nl = loss_of(model, crit, left, range(len(left)))
    assert nr == nl > 0
    assert abs(lr - ll) < 1e-4 * max(1.0, abs(lr))


@pytest.mark.parametrize("method", ["causal", "masked", "pseudo_masked"])
def test_batch_loss_is_the_sum_of_example_losses(method):
    model, d = tiny_model(method)
    crit = S2SLabelSmoothedCrossEntropy(SimpleNamespace(target_dictionary=d), 0.1)
    ds = make_dataset(d, method, False)
    with torch.no_grad():
        total, n_total = loss_of(model, crit, ds, range(len(ds)))
        parts = [loss_of(model, crit, ds, [i]) for i in range(len(ds))]
    assert n_total == sum(n for _, n in parts)
    assert abs(total - sum(l for l, _ in parts)) < 1e-4 * abs(total)


def test_corruption_is_seeded_per_example_not_per_batch():
    model, d = tiny_model("pseudo_masked")
    ds = make_dataset(d, "pseudo_masked", False)
    a = ds[4]["tgt_input"]
    _ = [ds[i] for i in range(len(ds))]  # other draws in between
    assert torch.equal(ds[4]["tgt_input"], a)
    ds.set_epoch(2)
    # a new epoch draws a new corruption for at least one example
    assert any(not torch.equal(ds[i]["tgt_input"], make_dataset(d, "pseudo_masked", False)[i]["tgt_input"])
               for i in range(len(ds)))


def test_masked_labels_only_on_corrupted_slots_and_pseudo_labels_everywhere():
    _, d = tiny_model("masked")
    ds_m = make_dataset(d, "masked", False)
    ds_p = make_dataset(d, "pseudo_masked", False)
    for i in range(len(ds_m)):
        item = ds_m[i]
        labelled = item["loss_target"].ne(d.pad())
        n = len(item["target"])
        assert labelled.sum() == max(1, round(0.5 * n))
        # the label is the original token
        assert torch.equal(item["loss_target"][labelled], item["target"][labelled])
        assert torch.equal(ds_p[i]["loss_target"], ds_p[i]["target"])
