"""Reduced precision on the CPU (s2sft_fairseq/precision.py): bf16 training, bf16 / int8 decoding.

A flag that silently does nothing must fail here: the ops that run under each flag are recorded
at the dispatcher level (every aten op with its input dtypes), and the outputs must differ from
fp32's, by more than 0 and less than a stated tolerance.
"""
import os

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import s2sft_fairseq  # noqa: F401
from conftest import USER_DIR, run_cli
from s2sft_fairseq.precision import AutocastCriterion, prepare_for_decoding
from tiny import tiny_model

MATMULS = {"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "_scaled_dot_product_flash_attention_for_cpu"}


class OpDtypes(TorchDispatchMode):
    """Records (op name, dtypes of its tensor inputs) for every aten op that runs."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = {a.dtype for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()}
        self.ops.append((func.overloadpacket.__name__, dtypes))
        return func(*args, **(kwargs or {}))

    def dtypes_of(self, names):
        return [d for n, d in self.ops if n in names]


def toy_batch(d, method, n=4, seed=0):
    """A batch through the plugin's dataset and collater (corruption as in training)."""
    from s2sft_fairseq.data import PairedExamplesDataset
    from s2sft_fairseq.tasks.inference_data import TokensDataset
    g = torch.Generator().manual_seed(seed)
    srcs = [torch.cat([torch.randint(5, len(d), (int(k),), generator=g), torch.tensor([d.eos()])])
            for k in torch.randint(3, 9, (n,), generator=g)]
    tgts = [torch.cat([torch.randint(5, len(d), (int(k),), generator=g), torch.tensor([d.eos()])])
            for k in torch.randint(2, 6, (n,), generator=g)]
    ds = PairedExamplesDataset(TokensDataset(srcs), TokensDataset(tgts), d, method, 32, 16, shuffle=False)
    return ds.collater([ds[i] for i in range(n)])


def criterion_for(d):
    from types import SimpleNamespace
    from s2sft_fairseq.criterions.s2s_label_smoothed_cross_entropy import S2SLabelSmoothedCrossEntropy
    return S2SLabelSmoothedCrossEntropy(SimpleNamespace(target_dictionary=d), 0.1)


# ---------------------------------------------------------------------------------------- training
@pytest.mark.parametrize("method", ["causal", "masked", "pseudo_masked"])
def test_amp_cpu_forward_runs_matmuls_in_bf16_and_norms_softmax_loss_in_fp32(method):
    model, d = tiny_model(method, seed=1)
    model.train()  # training: attention dropout on, so the written-out attention (softmax op) runs
    sample, crit = toy_batch(d, method), criterion_for(d)
    torch.manual_seed(0)
    loss32, _, _ = crit(model, sample)
    with OpDtypes() as rec:
        torch.manual_seed(0)
        loss16, _, _ = AutocastCriterion(crit)(model, sample)
    mm = rec.dtypes_of(MATMULS)
    assert mm and all(dt == {torch.bfloat16} for dt in mm), f"matmuls not all bf16: {set(map(frozenset, mm))}"
    for name in ("native_layer_norm", "_softmax", "_log_softmax"):
        seen = rec.dtypes_of({name})
        assert seen and all(dt == {torch.float32} for dt in seen), f"{name}: {seen}"
    assert loss16.dtype == torch.float32
    rel = abs(loss16.item() - loss32.item()) / abs(loss32.item())
    assert 0 < rel < 0.02, f"bf16 loss differs from fp32 by {rel:.2e} (expected > 0 and < 2 %)"
    loss16.backward()
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())


def amp_args(data, save, arch="unilm_seq2seq_tiny", method="pseudo_masked", max_update=6):
    return [data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--arch", arch, "--ft-method", method,
            "--criterion", "s2s_label_smoothed_cross_entropy", "--cpu", "--amp", "--optimizer", "torch_adamw",
            "--lr", "1e-3", "--lr-scheduler", "fixed", "--batch-size", "8", "--max-update", str(max_update),
            "--max-source-positions", "48", "--max-target-positions", "24", "--no-epoch-checkpoints",
            "--disable-validation", "--seed", "3", "--num-workers", "0", "--save-dir", str(save),
            "--required-batch-size-multiple", "1", "--log-format", "simple", "--log-interval", "1"]


def state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("arch,method", [("unilm_seq2seq_tiny", "pseudo_masked"), ("bert2bert_tiny", "causal")])
def test_amp_cpu_training_resumes_exactly_and_saves_fp32(toy_data, tmp_path, arch, method):
    """6 updates in one go == 3 updates, then the same command resumed to 6 (bf16 autocast on),
    with --update-freq 2; the checkpoints hold fp32 tensors, and differ from an fp32 run."""
    args = amp_args(toy_data, tmp_path / "once", arch, method) + ["--update-freq", "2"]
    run_cli("fairseq-train", *args)
    split = amp_args(toy_data, tmp_path / "split", arch, method, max_update=3) + ["--update-freq", "2"]
    run_cli("fairseq-train", *split)
    run_cli("fairseq-train", *(split[:split.index("--max-update") + 1] + ["6"] + split[split.index("--max-update") + 2:]))
    a, b = state(tmp_path / "once" / "checkpoint_last.pt"), state(tmp_path / "split" / "checkpoint_last.pt")
    assert a["optimizer_history"][-1]["num_updates"] == b["optimizer_history"][-1]["num_updates"] == 6
    assert all(t.dtype == torch.float32 for t in a["model"].values() if t.is_floating_point())
    diff = max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"])
    assert diff <= 1e-6, f"resumed bf16 run differs by {diff}"
    fp32 = [x for x in args if x != "--amp"]
    fp32[fp32.index("--save-dir") + 1] = str(tmp_path / "fp32")
    run_cli("fairseq-train", *fp32)
    c = state(tmp_path / "fp32" / "checkpoint_last.pt")
    moved = max((a["model"][k] - c["model"][k]).abs().max().item() for k in a["model"])
    assert moved > 0, "--amp --cpu trained exactly like fp32: autocast did not run"


@pytest.mark.slow
def test_amp_cpu_two_workers_equal_update_freq_2(toy_data, tmp_path):
    """DDP (gloo, 2 processes) under bf16 autocast == one process with --update-freq 2. Tolerance
    1e-5: each worker's micro-batch gradient is the same bf16 computation; only the fp32 sum of
    the two gradients is ordered differently."""
    from test_distributed import launch_two_workers, params
    args = amp_args(toy_data, tmp_path / "unused", max_update=4) + ["--dropout", "0", "--attention-dropout", "0"]
    args = args[:args.index("--save-dir")] + args[args.index("--save-dir") + 2:]
    launch_two_workers(args, tmp_path / "ddp")
    run_cli("fairseq-train", *args, "--update-freq", "2", "--save-dir", tmp_path / "single")
    a, b = params(tmp_path / "ddp" / "checkpoint_last.pt"), params(tmp_path / "single" / "checkpoint_last.pt")
    diff = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert diff <= 1e-5, f"2 workers differ from update-freq 2 by {diff}"


# ---------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("precision", ["bf16", "int8"])
@pytest.mark.parametrize("method", ["causal", "pseudo_masked"])
@torch.no_grad()
def test_reduced_precision_decoding_runs_reduced_ops_and_cache_equals_full(precision, method):
    from test_incremental import make_source, run_decode
    model, d = tiny_model(method, seed=3, rel_pos_bins=16, max_rel_pos=32)
    src = make_source(d, [9, 5, 7], width=9, left_pad=False)
    enc32 = model.encoder(src)
    ref, _ = model.decoder(torch.full((3, 1), d.eos()), encoder_out=enc32)
    prepare_for_decoding(model, precision)
    with OpDtypes() as rec:
        enc = model.encoder(src)
        out, _ = model.decoder(torch.full((3, 1), d.eos()), encoder_out=enc, incremental_state={})
    names = {n for n, _ in rec.ops}
    if precision == "bf16":
        assert all(dt == {torch.bfloat16} for dt in rec.dtypes_of(MATMULS))
    else:  # quantized linear layers: integer matmuls, no fp32 addmm left in the layers
        assert names & {"_int_mm", "_weight_int8pack_mm", "int_mm"} or any("int" in n and "mm" in n for n in names), names
    diff = (torch.log_softmax(out.float(), -1) - torch.log_softmax(ref.float(), -1)).abs().max().item()
    assert 0 < diff < (0.1 if precision == "bf16" else 0.2), f"{precision} next-token log-probs differ by {diff}"
    worst, _ = run_decode(model, src, beam=2, steps=5, shrink_at=2, keep=torch.tensor([0, 2]))
    # same-precision cached vs packed recompute: the same math in other kernels and orders; in bf16
    # the logits (|x| up to ~10 here) carry about 3 significant digits
    tol = 0.1 if precision == "bf16" else 1e-3
    assert worst["incremental"] <= tol and worst["full"] <= tol, worst


@pytest.fixture(scope="module")
def minilm_briefly_trained(toy_data, minilm, tmp_path_factory):
    """The real MiniLM fine-tuned for 40 updates on the toy corpus (meaningful distributions)."""
    save = tmp_path_factory.mktemp("minilm40")
    run_cli("fairseq-train", toy_data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--arch", "unilm_seq2seq",
            "--pretrained-checkpoint", minilm, "--criterion", "s2s_label_smoothed_cross_entropy", "--cpu",
            "--optimizer", "torch_adamw", "--lr", "3e-4", "--batch-size", "16", "--max-update", "40",
            "--max-source-positions", "64", "--max-target-positions", "32", "--no-epoch-checkpoints",
            "--disable-validation", "--seed", "1", "--num-workers", "0", "--save-dir", save)
    return str(save / "checkpoint_last.pt")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_reduced_precision_agrees_with_fp32_and_generates_every_sentence(precision, toy_data, minilm_briefly_trained):
    """Teacher-forced top-1 agreement with fp32 on the toy test split >= 95 %, and fairseq-generate
    with --decode-precision returns every sentence."""
    from fairseq import checkpoint_utils
    models, _cfg, task = checkpoint_utils.load_model_ensemble_and_task([minilm_briefly_trained],
                                                                      arg_overrides={"data": toy_data})
    model = models[0].eval()
    task.load_dataset("test")
    ds = task.dataset("test")
    batch = ds.collater([ds[i] for i in range(len(ds))])
    net = batch["net_input"]
    with torch.no_grad():
        h32 = model.decoder.forward_packed(net["src_tokens"], net["tgt_input"])
        top32 = model.decoder.output_layer(h32).argmax(-1)
        prepare_for_decoding(model, precision)
        hq = model.decoder.forward_packed(net["src_tokens"], net["tgt_input"])
        topq = model.stack.lm_head.decode_logits(hq).argmax(-1)
    real = batch["target"].ne(task.dictionary.pad())
    agree = (top32 == topq)[real].float().mean().item()
    assert agree >= 0.95, f"{precision}: teacher-forced top-1 agreement with fp32 {agree:.3f}"
    proc = run_cli("fairseq-generate", toy_data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--cpu",
                   "--path", minilm_briefly_trained, "--gen-subset", "test", "--beam", "3", "--batch-size", "8",
                   "--max-len-b", "12", "--decode-precision", precision)
    hyps = [l for l in proc.stdout.splitlines() if l.startswith("H-")]
    assert len(hyps) == len(ds) == 20
    assert os.path.exists(minilm_briefly_trained)
