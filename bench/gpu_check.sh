#!/usr/bin/env bash
# One prepared GPU check of kernelkit: on a machine with a CUDA GPU, install what it needs, run
# the test suite's CUDA cases (tests/ under --device cuda: the compiled Triton kernels on CUDA
# tensors, against the same references as the interpreted run), then the GPU bench cases
# (bench/ under --device cuda), and write the results under OUTDIR as each step completes.
#
#   bench/gpu_check.sh OUTDIR             the check (needs a CUDA GPU)
#   bench/gpu_check.sh --dry-run OUTDIR   no GPU needed: parses the arguments, installs the
#                                         required test/bench deps if missing, collects every
#                                         CUDA test case and GPU bench case, verifies that
#                                         each family has some, and runs the bench cases'
#                                         code once on the CPU at tiny sizes (CI runs this)
#
# Options: --budget S (default 450: the whole check, seconds), --jobs N (pytest-xdist workers
# for the tests; default min(nproc, 12)), --python PY (default: $PYTHON, else python3),
# --no-install (use the kernelkit that imports already, e.g. on a rerun in the same machine:
# saves the build), --no-gpu-ok (go on without a CUDA device: every case is then skipped;
# a check of this script's own steps on a machine without GPU).
#
# torch: it expects torch==2.13.0 with CUDA, the build pip installs from the registry's default
# index on Linux x86-64 (`pip install torch==2.13.0`); it installs that build where the machine
# has no torch, and uses any torch >= 2.4 with CUDA that is already there (the lease machines
# have one; nothing can be downloaded there). Other packages: the pinned [test] and [bench]
# extras of pyproject.toml, each installed only if it is missing; wheels put in .whl/ at the
# repo root are installed first, offline (bench/README.md: how to carry fla, mambapy and
# accelerated-scan to a machine without network).
#
# Sizing (an H200 lease has about 15 minutes of device time, all tries together): the whole
# check runs under --budget (450 s by default, 7.5 minutes), and every step under `timeout`
# with its own cap, shortened to what the budget has left, so a hang costs one step, not the
# lease. Expected on an H200 (16 cores): build ~1-2 min, tests ~2 min (595 cases, most of it
# Triton compiling, spread over xdist workers), bench ~2 min (8 families, each in its own
# process, timed ~0.2 s a row). Tests come first, then the bench, family by family; each
# result file is written when its step ends, so a step that is cut short leaves the earlier
# ones. Files (at most 8, what a lease brings back): env.txt, gpu_check.log, tests.log,
# tests.xml, tests.txt (the summary), bench.md (the tables), bench.json (the raw runs).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

DRY=0 BUDGET=450 JOBS="" PY="${PYTHON:-python3}" OUTDIR="" INSTALL=1 NOGPU_OK=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --no-install) INSTALL=0 ;;
    --no-gpu-ok) NOGPU_OK=1 ;;
    --budget) BUDGET="${2:?--budget needs seconds}"; shift ;;
    --jobs) JOBS="${2:?--jobs needs a count}"; shift ;;
    --python) PY="${2:?--python needs an interpreter}"; shift ;;
    -h|--help) usage ;;
    -*) echo "gpu_check: unknown option $1" >&2; usage ;;
    *) [ -z "$OUTDIR" ] || { echo "gpu_check: one OUTDIR only" >&2; usage; }; OUTDIR="$1" ;;
  esac
  shift
done
[ -n "$OUTDIR" ] || { echo "gpu_check: OUTDIR is required" >&2; usage; }
case "$BUDGET" in ''|*[!0-9]*) echo "gpu_check: --budget must be seconds" >&2; exit 2 ;; esac
mkdir -p "$OUTDIR" || exit 2
OUTDIR=$(cd "$OUTDIR" && pwd)
WORK="${TMPDIR:-/tmp}/kernelkit-gpu-check"  # per-family files, merged into OUTDIR's
mkdir -p "$WORK"
LOG="$OUTDIR/gpu_check.log"
: >"$LOG"
START=$(date +%s)

say() { printf '[gpu_check %4ss] %s\n' "$(( $(date +%s) - START ))" "$*" | tee -a "$LOG"; }
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
# cap SECONDS: that, or what the budget has left minus a reserve for writing the summaries.
cap() { local l; l=$(( $(left) - 15 )); [ "$l" -lt "$1" ] && echo "$l" || echo "$1"; }
# step NAME CAP CMD...: runs CMD under timeout (which signals its whole process group), its
# output appended to $STEP_OUT (default: the log); every 20 s the output's last line is shown.
step() {
  local name="$1" limit out="${STEP_OUT:-$LOG}" rc watcher; limit=$(cap "$2"); shift 2
  if [ "$limit" -le 5 ]; then say "SKIP $name: the budget is spent"; return 124; fi
  say "$name (at most ${limit}s)"
  ( while sleep 20; do
      say "  ... $name: $(tail -c 2000 "$out" 2>/dev/null | tr -d '\r' \
        | grep -v -e '^$' -e '^\[gpu_check' | tail -1 | cut -c1-110)"
    done ) &
  watcher=$!
  timeout -k 10 "$limit" "$@" >>"$out" 2>&1
  rc=$?
  kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
  { [ $rc -eq 124 ] || [ $rc -eq 137 ]; } && say "TIMEOUT $name after ${limit}s"
  [ $rc -ne 0 ] && say "$name: exit $rc (details in $(basename "$out"))"
  return $rc
}
pyhas() { "$PY" -c "import $1" >/dev/null 2>&1; }

command -v timeout >/dev/null || { echo "gpu_check: needs coreutils timeout" >&2; exit 2; }
command -v "$PY" >/dev/null || { echo "gpu_check: no $PY" >&2; exit 2; }
say "kernelkit GPU check$( [ $DRY -eq 1 ] && echo ' (dry run)'): repo $ROOT, out $OUTDIR," \
    "budget ${BUDGET}s, python $PY"

# ---- packages ------------------------------------------------------------------------------
# Wheels carried in .whl/ (a machine without network): installed offline into a folder of
# their own, first on the path.
if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
  step "install carried wheels (.whl/)" 120 "$PY" -m pip install -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target "$WORK/site" "$ROOT"/.whl/*.whl
  export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
fi

PIP_QUICK=(--disable-pip-version-check --retries 0 --timeout 15)
if ! pyhas torch; then
  # The build this script expects: pip's default index serves the CUDA build on Linux x86-64.
  step "install torch==2.13.0 (CUDA build, default index)" 300 \
    "$PY" -m pip install "${PIP_QUICK[@]}" "torch==2.13.0" \
    || { say "FAIL: no torch and none could be installed"; exit 1; }
fi

# The extras' pins, read from pyproject.toml: "module spec" lines.
"$PY" - >"$WORK/deps.txt" 2>>"$LOG" <<'EOF'
import re
try:
    import tomllib
    extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]
except Exception:  # Python 3.10 has no tomllib: the same pins, by hand
    extras = {"test": ["pytest>=8", "hypothesis", "scipy", "triton>=3.2"],
              "bench": ["pytest-benchmark>=4", "accelerated-scan==0.3.1", "mambapy==1.2.0"]}
required = {"pytest", "hypothesis", "scipy", "triton", "pytest-benchmark"}
gpu_peers = {"accelerated-scan", "mambapy"}  # the [bench] peers that run on CUDA tensors
for spec in extras["test"] + extras["bench"]:
    name = re.split(r"[<>=!~ \[]", spec)[0]
    if name in required or name in gpu_peers:
        kind = "required" if name in required else "optional"
        print(kind, name.replace("-", "_"), spec)
EOF
sort -u "$WORK/deps.txt" -o "$WORK/deps.txt"
# The optional peers are fetched only where the registry answers (a lease machine has no
# network: a pip that waits for one there would spend the lease).
online=0
probe="import urllib.request as u; u.urlopen('https://pypi.org/simple/pip/', timeout=5)"
[ $DRY -eq 0 ] && timeout 8 "$PY" -c "$probe" >/dev/null 2>&1 && online=1
while read -r kind module spec; do
  pyhas "$module" && continue
  if [ "$kind" = optional ] && [ $online -eq 0 ]; then
    [ $DRY -eq 0 ] && say "$spec not installed (no registry; carry it in .whl/): rows skipped"
    continue
  fi
  # --no-deps for the peers: nothing may replace the machine's torch.
  nodeps=(); [ "$kind" = optional ] && nodeps=(--no-deps)
  if ! step "install $spec ($kind)" 90 "$PY" -m pip install -q "${PIP_QUICK[@]}" \
      "${nodeps[@]}" "$spec"; then
    [ "$kind" = required ] && { say "FAIL: $spec is required"; exit 1; }
    say "$spec not installed: its bench rows are reported as skipped"
  fi
done <"$WORK/deps.txt"

# ---- dry run -------------------------------------------------------------------------------
# Families whose CUDA tests and GPU bench cases must be found (a new family's files are listed
# as a warning until they have some).
TEST_FILES="bi_attention_triton binary_conv2d_triton binary_gemm_triton bit_packing_triton
  delta_rule_triton hadamard_triton half_gemm_triton linear_scan_2d_triton linear_scan_triton
  odeint odeint_triton quantizers_triton randn_philox_triton scheduler_step_triton
  selective_scan_triton selective_state_update sparse_wht_triton"
BENCH_FILES="binary delta_rule hadamard half_gemm linear_scan linear_scan_2d selective_scan
  selective_state_update"

# collect KIND DIR ARGS...: node ids of the cases, into $WORK/KIND.ids; 0 if some were found.
collect() {
  local kind="$1" dir="$2"; shift 2
  (cd "$ROOT" && timeout -k 5 120 "$PY" -m pytest "$dir" --collect-only -q -p no:cacheprovider \
    "$@") >"$WORK/$kind.collect" 2>&1
  grep '::' "$WORK/$kind.collect" | sed 's/^\.\///' >"$WORK/$kind.ids"
  [ -s "$WORK/$kind.ids" ]
}
# verify KIND DIR PREFIX REQUIRED WHAT: every DIR/PREFIX<f>.py of REQUIRED has cases (node ids
# start with PREFIX<f>.py, relative to the rootdir pytest chose: tests/ for the tests, bench/
# for the bench, which has its own pytest.ini); the others without any are only warned of.
verify() {
  local kind="$1" dir="$2" prefix="$3" required="$4" what="$5" bad=0 f n id
  for f in $required; do
    id="${prefix}${f}.py::"
    n=$(sed 's|^tests/||' "$WORK/$kind.ids" | grep -c "^$id")
    if [ "$n" -eq 0 ]; then say "MISSING: no $what in $dir/${prefix}${f}.py"; bad=1
    else say "  $dir/${prefix}${f}.py: $n $what"; fi
  done
  for f in "$ROOT/$dir/$prefix"*.py; do
    f=$(basename "$f" .py); f=${f#"$prefix"}
    case " $(echo "$required" | tr '\n' ' ') " in *" $f "*) continue ;; esac
    [ "$kind" = tests ] && [[ "$f" != *_triton ]] && continue
    sed 's|^tests/||' "$WORK/$kind.ids" | grep -q "^${prefix}${f}\.py::" \
      || say "  warning: $dir/${prefix}${f}.py has no $what"
  done
  return $bad
}

if [ $DRY -eq 1 ]; then
  ok=1
  if collect tests tests --device cuda; then
    say "tests: $(wc -l <"$WORK/tests.ids") CUDA cases collected (tests --device cuda)"
    verify tests tests test_ "$TEST_FILES" "CUDA cases" || ok=0
  else say "FAIL: collecting the CUDA tests found nothing:"; tail -20 "$WORK/tests.collect" \
    | tee -a "$LOG"; ok=0; fi
  if collect bench bench --bench-device cuda; then
    say "bench: $(wc -l <"$WORK/bench.ids") GPU rows collected (bench --bench-device cuda)"
    verify bench bench bench_ "$BENCH_FILES" "GPU rows" || ok=0
  else say "FAIL: collecting the GPU bench cases found nothing:"; tail -20 \
    "$WORK/bench.collect" | tee -a "$LOG"; ok=0; fi
  # The GPU cases' code, once, on CPU tensors of tiny sizes (bench/gpu.py's smoke mode).
  if (cd "$ROOT" && timeout -k 5 180 "$PY" -m pytest bench --bench-gpu-smoke -q \
      -p no:cacheprovider -W "ignore::pytest_benchmark.logger.PytestBenchmarkWarning") \
      >"$WORK/smoke.log" 2>&1; then
    say "bench smoke (the GPU cases' code on the CPU, tiny sizes): $(tail -1 "$WORK/smoke.log")"
  else say "FAIL: the GPU bench cases' code fails on the CPU (bench --bench-gpu-smoke):"
    grep -E '^(FAILED|ERROR)|Error' "$WORK/smoke.log" | head -20 | tee -a "$LOG"; ok=0; fi
  cat "$WORK/tests.ids" "$WORK/bench.ids" >"$OUTDIR/cases.txt"
  [ $ok -eq 1 ] && { say "dry run: OK (case list in $OUTDIR/cases.txt)"; exit 0; }
  say "dry run: FAILED"; exit 1
fi

# ---- the machine ---------------------------------------------------------------------------
{
  date -u
  (command -v nvidia-smi >/dev/null && timeout 20 nvidia-smi) || echo "no nvidia-smi"
  timeout 60 "$PY" -c "import torch, sys; print('python', sys.version.split()[0]);
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available',
      torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available()
      else '')
import triton; print('triton', triton.__version__)"
} >"$OUTDIR/env.txt" 2>&1
tee -a "$LOG" <"$OUTDIR/env.txt" | grep -E "^(torch|triton|python)" || true
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null
then
  say "torch sees no CUDA device (a CPU build of torch, or no GPU)"
  [ $NOGPU_OK -eq 1 ] || { say "FAIL: nothing to check"; exit 1; }
fi

# ---- kernelkit -----------------------------------------------------------------------------
# pip install . without build isolation (the build needs setuptools, wheel, pybind11, cmake
# from the machine: no network is needed); if that fails, the in-place CMake build the dev
# worktrees use, with python/ on PYTHONPATH.
if [ $INSTALL -eq 0 ]; then
  say "--no-install: using the kernelkit that imports"
elif ! step "pip install . (builds kernelkit._C)" 240 "$PY" -m pip install -q --no-deps \
    --no-build-isolation "${PIP_QUICK[@]}" .; then
  bd="$ROOT/build/gpu-check"
  mkdir -p "$bd"
  step "cmake configure (in-place fallback)" 60 cmake -S "$ROOT" -B "$bd" \
    -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$ROOT/python/kernelkit" \
    -DPython_EXECUTABLE="$(command -v "$PY")" \
    -Dpybind11_DIR="$("$PY" -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
    && step "cmake build (in-place fallback)" 240 cmake --build "$bd" -j "$(nproc)" \
    || { say "FAIL: kernelkit did not build"; exit 1; }
  [ -e "$ROOT/python/kernelkit/kernels" ] || ln -s ../../kernels "$ROOT/python/kernelkit/kernels"
  export PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}"
fi
(cd "$WORK" && "$PY" -c "import kernelkit, json; print('kernelkit', kernelkit.__file__,
json.dumps(kernelkit.build_info()))") >>"$OUTDIR/env.txt" 2>&1 \
  || { say "FAIL: kernelkit does not import"; tail -5 "$OUTDIR/env.txt"; exit 1; }
grep '^kernelkit' "$OUTDIR/env.txt" | cut -c1-200 | tee -a "$LOG"

# ---- tests ---------------------------------------------------------------------------------
unset TRITON_INTERPRET  # the CUDA run compiles the kernels (conftest.py refuses it set to 1)
xdist=(); pyhas xdist && xdist=(-n "${JOBS:-$(( $(nproc) < 12 ? $(nproc) : 12 ))}")
per_test=(); pyhas pytest_timeout && per_test=(--timeout 120)
say "tests: tests/ --device cuda ${xdist[*]} ${per_test[*]} (progress in tests.log)"
: >"$OUTDIR/tests.log"
STEP_OUT="$OUTDIR/tests.log" step "tests" 210 "$PY" -m pytest tests --device cuda -q -rfEs \
  -p no:cacheprovider "${xdist[@]}" "${per_test[@]}" --durations=15 \
  --junitxml="$OUTDIR/tests.xml" -o junit_family=xunit2
test_rc=$?
{
  echo "# kernelkit GPU tests ($(date -u '+%Y-%m-%d %H:%M UTC'), exit $test_rc)"
  echo
  grep -E '^(torch|triton)' "$OUTDIR/env.txt"
  grep -m1 -E 'NVIDIA|H200|H100|A100' "$OUTDIR/env.txt" || true
  echo
  grep -E '^(FAILED|ERROR) ' "$OUTDIR/tests.log" | head -100
  grep -E '^SKIPPED ' "$OUTDIR/tests.log" | head -20
  grep -E '(passed|failed|error|skipped|no tests ran).* in [0-9.]+s' "$OUTDIR/tests.log" | tail -1
  echo
  [ -s "$OUTDIR/tests.xml" ] && "$PY" - "$OUTDIR/tests.xml" <<'EOF' 2>/dev/null
import collections, sys, xml.etree.ElementTree as ET
counts = collections.defaultdict(collections.Counter)
for case in ET.parse(sys.argv[1]).iter("testcase"):
    parts = case.get("classname", "?").split(".")
    name = next((p for p in parts if p.startswith("test_")), parts[0])
    kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
    counts[name][kind] += 1
print("| test file | passed | failed | errors | skipped |\n|---|---|---|---|---|")
for name, c in sorted(counts.items()):
    print(f"| {name} | {c['passed']} | {c['failure']} | {c['error']} | {c['skipped']} |")
EOF
  [ $test_rc -eq 124 ] || [ $test_rc -eq 137 ] && echo "CUT SHORT by its time cap: see tests.log"
} >"$OUTDIR/tests.txt"
say "tests: $(grep -E ' in [0-9.]+s' "$OUTDIR/tests.txt" | tail -1 || echo 'no summary line')"

# ---- bench ---------------------------------------------------------------------------------
# One report.py process per family: a family that fails or runs out of time costs its rows
# only, and bench.md / bench.json hold every family done so far.
: >"$OUTDIR/bench.md"
"$PY" -c "import json; json.dump({}, open('$OUTDIR/bench.json', 'w'))"
for fam in hadamard half_gemm binary selective_scan selective_state_update linear_scan \
    linear_scan_2d delta_rule; do
  json="$WORK/bench_$fam.json" md="$WORK/bench_$fam.md" progress="$WORK/bench_$fam.log"
  rm -f "$json" "$md"; : >"$progress"
  # report.py: the tables on stdout (to bench_<family>.md), pytest's progress on stderr
  STEP_OUT="$progress" step "bench $fam" 60 bash -c '"$0" bench/report.py --device cuda \
    --quick --json "$1" -k "$2" >"$3"' "$PY" "$json" "bench_$fam.py" "$md"
  rc=$?
  cat "$progress" >>"$LOG"
  {
    echo "<!-- bench_$fam.py: exit $rc -->"
    cat "$md" 2>/dev/null
    if [ $rc -ne 0 ]; then
      printf '\n`bench_%s.py` exited %s; the end of its output:\n\n```\n' "$fam" "$rc"
      tail -15 "$progress"
      printf '```\n'
    fi
    echo
  } >>"$OUTDIR/bench.md"
  [ -s "$json" ] && "$PY" - "$OUTDIR/bench.json" "$fam" "$json" <<'EOF'
import json, sys
path, fam, part = sys.argv[1:]
merged = json.load(open(path))
merged[fam] = json.load(open(part))
json.dump(merged, open(path, "w"))
EOF
  [ "$(left)" -le 20 ] && { say "bench: budget spent, stopping after $fam"; break; }
done
say "done in $(( $(date +%s) - START ))s: $OUTDIR/{tests.txt,bench.md}"
grep -E ' in [0-9.]+s' "$OUTDIR/tests.txt" | tail -1
[ $test_rc -eq 0 ]
