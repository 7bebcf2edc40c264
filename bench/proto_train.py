#!/usr/bin/env python
"""Prototype speed-ups for ``unilm_seq2seq`` training, measured against the current code.

Nothing here changes ``s2sft_fairseq``: each variant monkey-patches one model instance built by
``bench/train.py``'s fairseq path, so the numbers say what the corresponding change to the
plugin would buy. Variants (combinable with ``+``):

* ``base``   the code as it is.
* ``qkv``    one fused ``F.linear`` for query/key/value (weights concatenated per call; the three
             ``nn.Linear`` and the state dict stay as they are): one 384x1152 GEMM instead of three
             384x384 ones, forward and backward.
* ``split``  block-split self-attention: source rows attend to source keys only (their mask has no
             target columns anyway), so they run their own SDPA over S keys instead of L; the
             target / [P] rows run SDPA over all L keys. Same result; S*(L-S) fewer scores,
             softmax and dropout entries per example and head.
* ``attn``   training attention written out (matmul, + additive mask built once per forward,
             softmax, dropout, matmul) instead of SDPA's math fallback (CPU SDPA has no fused
             kernel with dropout): the keep mask comes from 16-bit draws (two per 32-bit
             ``random_``, exact p up to 2^-16) applied with ``torch.where``, the 1/(1-p) scale goes
             on the (n x d) output instead of the (n x m) probabilities, and ``_safe_softmax``'s
             all/where/isneginf passes disappear. Eval / p = 0 still use SDPA.
* ``adam``   ``torch.optim.AdamW(fused=True)`` (one fused CPU kernel per tensor, decoupled weight
             decay like fairseq's Adam) instead of fairseq's Python per-parameter Adam.
* ``noattndrop`` attention dropout 0 (a config choice, ``--attention-dropout 0``; shown to size the
             cost of the math-kernel dropout path, not as a free win).

Usage::

    .venv/bin/python bench/proto_train.py --method pseudo_masked --variants base,qkv,split,adam,qkv+split+adam
    .venv/bin/python bench/proto_train.py --threads 1 --clock thread ...   # CPU time, robust on a busy machine
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train as tb  # noqa: E402


def patch_qkv(layer):
    import torch
    import torch.nn.functional as F

    def forward(x, attn_mask, past=None):
        h = layer.query.out_features
        w = torch.cat([layer.query.weight, layer.key.weight, layer.value.weight])
        b = torch.cat([layer.query.bias, layer.key.bias, layer.value.bias])
        q, k, v = F.linear(x, w, b).split(h, dim=-1)
        q, k, v = layer.split_heads(q), layer.split_heads(k), layer.split_heads(v)
        return _finish(layer, x, q, k, v, attn_mask, past)
    return forward


def keep_mask(shape, p):
    """Exact-probability dropout keep mask from 16-bit uniform draws (two per 32-bit draw)."""
    import torch
    n = 1
    for d in shape:
        n *= d
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_(-2 ** 31, 2 ** 31 - 1)
    u16 = bits.view(torch.int16)[:n].view(shape)
    return u16 >= -32768 + round(p * 65536)  # P(drop) = round(p*65536)/65536


def _attend(layer, q, k, v, attn_mask):
    import torch
    import torch.nn.functional as F
    p = layer.attention_dropout if layer.training else 0.0
    if getattr(layer, "custom_attention", False) and p > 0:
        # attn_mask is additive float here (0 / -inf, built once per forward)
        scores = torch.matmul(q * (q.size(-1) ** -0.5), k.transpose(-1, -2)) + attn_mask
        probs = torch.softmax(scores, dim=-1)
        probs = torch.where(keep_mask(probs.shape, p), probs, probs.new_zeros(()))
        return torch.matmul(probs, v) * (1.0 / (1.0 - p))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)


def _finish(layer, x, q, k, v, attn_mask, past):
    import torch
    new_kv = (k, v)
    if past is not None:
        k = torch.cat([past[0], k], dim=2)
        v = torch.cat([past[1], v], dim=2)
    if isinstance(attn_mask, tuple):  # split: (S, source mask, rest mask)
        S, m_src, m_rest = attn_mask
        ctx = torch.cat([_attend(layer, q[:, :, :S], k[:, :, :S], v[:, :, :S], m_src),
                         _attend(layer, q[:, :, S:], k, v, m_rest)], dim=2)
    else:
        ctx = _attend(layer, q, k, v, attn_mask)
    b, _, n, _ = ctx.shape
    ctx = ctx.transpose(1, 2).reshape(b, n, -1)
    x = layer.attn_layer_norm(x + layer.dropout(layer.attn_out(ctx)))
    x = layer.ffn_layer_norm(x + layer.dropout(layer.ffn_out(layer.act(layer.ffn_in(x)))))
    return x, new_kv


def patch_plain(layer):
    def forward(x, attn_mask, past=None):
        q = layer.split_heads(layer.query(x))
        k, v = layer.project_kv(x)
        return _finish(layer, x, q, k, v, attn_mask, past)
    return forward


def patch_forward_packed(decoder, split, additive):
    import torch
    from s2sft_fairseq.masks import pack

    def forward_packed(src_tokens, tgt_input):
        p = pack(src_tokens, tgt_input, decoder.method, decoder.dictionary.pad(), decoder.mask_idx,
                 decoder.use_token_types)
        S = src_tokens.size(1)
        m = p.attn_mask.unsqueeze(1)
        if additive:
            m = torch.zeros(m.shape, dtype=torch.float32).masked_fill_(~m, float("-inf"))
        mask = (S, m[:, :, :S, :S], m[:, :, S:, :]) if split else m
        stack = decoder.stack
        x = stack.embeddings(p.tokens, p.positions, p.token_types)
        for layer in stack.layers:
            x, _ = layer(x, mask)
        return x[:, p.predict_offset: p.predict_offset + tgt_input.size(1)]
    return forward_packed


def apply(runner, variant, lr=1e-4):
    import torch
    parts = set(variant.split("+")) - {"base"}
    unknown = parts - {"qkv", "split", "adam", "noattndrop", "attn"}
    if unknown:
        raise SystemExit(f"unknown variant parts {unknown}")
    stack = runner.model.stack
    for layer in stack.layers:
        layer.forward = patch_qkv(layer) if "qkv" in parts else patch_plain(layer)
        if "noattndrop" in parts:
            layer.attention_dropout = 0.0
        layer.custom_attention = "attn" in parts
    if "split" in parts or "attn" in parts:
        runner.model.decoder.forward_packed = patch_forward_packed(
            runner.model.decoder, split="split" in parts, additive="attn" in parts)
    if "adam" in parts:
        opt = torch.optim.AdamW([p for p in runner.model.parameters() if p.requires_grad], lr=lr,
                                betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, fused=True)

        class Wrap:
            def backward(self, loss):
                loss.backward()

            def step(self):
                opt.step()

            def zero_grad(self):
                opt.zero_grad(set_to_none=True)
        runner.optimizer = Wrap()
    return runner


def check_equivalence(runner_a, runner_b):
    """Same weights, eval mode: the patched forward gives the same loss as the plain one."""
    import torch
    runner_b.model.load_state_dict(runner_a.model.state_dict())
    runner_a.model.eval(), runner_b.model.eval()
    with torch.no_grad():
        la, lb = runner_a.forward(0), runner_b.forward(0)
    runner_a.model.train(), runner_b.model.train()
    return float(la), float(lb)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="pseudo_masked", choices=tb.OURS + tb.HF)
    ap.add_argument("--variants", default="base,qkv,split,adam,qkv+split+adam")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", default="wall", choices=("wall", "thread"),
                    help="thread = CPU time of the calling thread (only meaningful with --threads 1)")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--src-len", type=int, default=128)
    ap.add_argument("--tgt-len", type=int, default=32)
    ap.add_argument("--memory", action="store_true",
                    help="peak RSS per variant instead, each in a fresh subprocess (2 warm-up + 3 steps)")
    ap.add_argument("--worker-variant", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory and not args.worker_variant:
        import json
        import subprocess
        print("| variant | peak RSS MB | + over built model |\n|---|---|---|")
        for v in [v for v in args.variants.split(",") if v]:
            cmd = [sys.executable, os.path.abspath(__file__), "--memory", "--worker-variant", v,
                   "--method", args.method, "--threads", str(args.threads), "--batch", str(args.batch),
                   "--src-len", str(args.src_len), "--tgt-len", str(args.tgt_len)]
            p = subprocess.run(cmd, capture_output=True, text=True, env=tb.MEMORY_ENV)
            if p.returncode:
                raise SystemExit(p.stderr[-3000:])
            r = json.loads(p.stdout.strip().splitlines()[-1])
            print(f"| {v} | {r['peak']:.0f} | {r['peak'] - r['built']:.0f} |", flush=True)
        return
    torch = tb.setup_torch(args.threads)
    sys.path.insert(0, tb.REPO)
    clock = time.perf_counter if args.clock == "wall" else time.thread_time
    tb.time.perf_counter = clock  # the runners' phase timers use this clock
    path = tb.minilm_path()
    data_dir, dictionary = tb.make_data_dir(path)
    batches = tb.Batches(dictionary, args.batch, args.src_len, args.tgt_len)
    if args.worker_variant:
        import json
        import transformers  # noqa: F401 - same footprint as bench/train.py's workers
        r = apply(tb.build_runner(args.method, path, data_dir, batches), args.worker_variant)
        built = tb._rss_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        for i in range(5):
            r.step(i)
        print(json.dumps({"built": built / 1024, "peak": tb._rss_kb("VmHWM") / 1024}))
        return
    variants = [v for v in args.variants.split(",") if v]
    runners = {}
    for v in variants:
        r = tb.build_runner(args.method, path, data_dir, batches)
        runners[v] = apply(r, v) if args.method in tb.OURS else r
    if args.method in tb.OURS:
        base = variants[0]
        for v in variants[1:]:
            la, lb = check_equivalence(runners[base], runners[v])
            print(f"[check] eval loss {base} {la:.6f} vs {v} {lb:.6f}", flush=True)
    for r in runners.values():
        for i in range(args.warmup):
            r.step(i)
    times = {v: [] for v in variants}
    order = list(variants)
    for rnd in range(args.steps):
        for v in order:
            times[v].append(runners[v].step(args.warmup + rnd))
        order = order[1:] + order[:1]
    ref = statistics.median(sum(t) for t in times[variants[0]])
    print(f"{args.method}, {args.threads} threads, {args.clock} clock, median of {args.steps} interleaved steps")
    ref_best = min(sum(t) for t in times[variants[0]])
    print("| variant | median step s | fwd | bwd | opt | speed-up (medians) | best step s | speed-up (best) |")
    print("|---|---|---|---|---|---|---|---|")
    for v in variants:
        tot = statistics.median(sum(t) for t in times[v])
        best = min(sum(t) for t in times[v])
        f, b, o = (statistics.median(t[i] for t in times[v]) for i in range(3))
        print(f"| {v} | {tot:.3f} | {f:.3f} | {b:.3f} | {o:.3f} | {ref / tot:.2f}× | {best:.3f} | {ref_best / best:.2f}× |")


if __name__ == "__main__":
    main()
