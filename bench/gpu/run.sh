#!/usr/bin/env bash
# GPU benchmark of the engine, one command: `bash bench/gpu/run.sh` from the repository root (≤ 6 minutes).
# Picks a Python that has CUDA torch + transformers + peft (no network is needed), prints what it uses and how it
# differs from python/requirements.txt, then runs bench/gpu/bench.py, which prints one JSON object on its last line
# and writes $OUT/gpu-bench.json when OUT is set. CPU check of the same path: ARC_TTFT_BENCH_SHAPE=tiny.
# bench.py stops starting work at ARC_TTFT_BENCH_DEADLINE_S (LIMIT - 40 s): the static / compiled decode, the
# mixed-batch and the compiled-training parts are cut there and recorded as skipped, so the JSON is printed before
# the timeout below.
#
# Python, first that works: $PYTHON_BIN; python3 on PATH (the GPU image's, which holds CUDA torch); the venv of
# `arc-ttft setup` ($ARC_TTFT_VENV); else a venv made here (.cache/gpu-venv) on top of python3's packages
# (--system-site-packages) with python/requirements.txt installed from carried wheels (.whl/) or the index.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
SHAPE=${ARC_TTFT_BENCH_SHAPE:-0.5b}
LIMIT=${ARC_TTFT_BENCH_LIMIT_S:-400}
export PYTHONUNBUFFERED=1 PIP_RETRIES=0 PIP_DISABLE_PIP_VERSION_CHECK=1 TOKENIZERS_PARALLELISM=false
export ARC_TTFT_BENCH_DEADLINE_S=${ARC_TTFT_BENCH_DEADLINE_S:-$((LIMIT - 40))}

say() { printf '[run.sh] %s\n' "$*" >&2; }

# The whole log comes back too (the device tool returns only the output's tail): recompiles, CUDA-graph skips and
# tracebacks are on stderr.
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  exec 2> >(tee -a "$OUT/gpu-bench.log" >&2)
fi

# No JSON at all would waste the run: say why in it.
fail_json() {
  [ -n "${OUT:-}" ] || return 0
  printf '{"benchmark": "engine-gpu", "error": "%s"}\n' "$1" >"$OUT/gpu-bench.json"
}

# Usable: imports torch, transformers ≥ 5 and peft; on the 0.5b shape torch must also see a GPU.
usable() {
  local need_cuda=1
  [ "$SHAPE" = tiny ] && need_cuda=0
  "$1" - "$need_cuda" >&2 <<'EOF'
import sys
import torch, transformers, peft  # noqa: F401
assert int(transformers.__version__.split(".")[0]) >= 5, f"transformers {transformers.__version__} < 5"
if sys.argv[1] == "1":
    assert torch.cuda.is_available(), f"torch {torch.__version__} sees no GPU"
print(f"  {sys.executable}: torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}, cuda {torch.cuda.is_available()}", file=sys.stderr)
EOF
}

PY=""
for cand in "${PYTHON_BIN:-}" "$(command -v python3 || true)" "${ARC_TTFT_VENV:+$ARC_TTFT_VENV/bin/python}"; do
  [ -n "$cand" ] || continue
  say "trying $cand"
  if out=$(usable "$cand" 2>&1); then
    printf '%s\n' "$out" >&2
    PY=$cand
    break
  fi
  printf '%s\n' "$out" | tail -1 >&2
done
if [ -z "$PY" ]; then
  VENV=$ROOT/.cache/gpu-venv
  say "no ready Python; creating $VENV (--system-site-packages) from python/requirements.txt"
  python3 -m venv --system-site-packages "$VENV" || { say "python3 -m venv failed"; fail_json "run.sh: no usable Python, and python3 -m venv failed"; exit 1; }
  if [ -d .whl ]; then
    "$VENV/bin/python" -m pip install -q --no-index --find-links .whl -r python/requirements.txt
  else
    "$VENV/bin/python" -m pip install -q --retries 0 -r python/requirements.txt
  fi || say "pip install failed (no network on a GPU machine: carry wheels in .whl/, see bench/README.md)"
  if usable "$VENV/bin/python"; then PY=$VENV/bin/python; else
    say "no usable Python found"
    fail_json "run.sh: no Python with torch, transformers >= 5 and peft (and a GPU for the 0.5b shape); see gpu-bench.log"
    exit 1
  fi
fi
say "using $PY"

# How the environment differs from the pinned requirements (informational: the engine needs torch ≥ 2.4,
# transformers 5.x, peft ≥ 0.18).
"$PY" - <<'EOF' >&2
from importlib import metadata
drift = []
for line in open("python/requirements.txt"):
    line = line.split("#")[0].strip()
    if "==" not in line:
        continue
    name, want = line.split("==")
    try:
        have = metadata.version(name)
    except metadata.PackageNotFoundError:
        have = "missing"
    if have.split("+")[0] != want:
        drift.append(f"{name} {have} (pinned {want})")
print("[run.sh] differs from python/requirements.txt: " + (", ".join(drift) or "nothing"))
EOF
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >&2
command -v node >/dev/null && say "node $(node --version) is here (not needed: the GPU bench drives arc_ttft from Python)"

timeout --kill-after=10 "$LIMIT" "$PY" bench/gpu/bench.py
status=$?
[ $status -eq 124 ] && say "bench.py ran past ${LIMIT}s; partial results are in \$OUT/gpu-bench.json"
exit $status
