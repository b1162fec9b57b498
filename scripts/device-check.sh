#!/usr/bin/env bash
# device-check.sh: on a machine with an NVIDIA GPU, install the GPU build, run the GPU tests
# and the GPU benchmarks, and write ONE report: ${OUT:-out}/device-report.md.
#
#   scripts/device-check.sh
#
# Stages, in order, each under its own timeout and all under one deadline (DIAGD_CHECK_BUDGET
# seconds, default 470, so the whole check ends within 8 minutes on a data-centre GPU):
#   1. setup.sh --gpu (GPU build of ONNX Runtime, bin/diagd), then `diagd version` (providers);
#      the benchmarks are built once; the real-size SDXL stand-ins start being written in the
#      background (≈7 GB fp16, ≈14 GB fp32, under ${DIAGD_CHECK_WORK:-out/device-check})
#   2. GPU tests (DIAGD_GPU=1): detect on CUDA, TensorRT and TensorRT fp16 against CPU scores
#   3. bench detect-providers: ResNet-50 704×256 frames/s on CPU, CUDA, TensorRT fp16
#   4. bench sdxlreal on CUDA, fp16 then fp32: seconds per 1024² image (30 steps, CFG)
#   5. bench trainstep on CUDA, if this tree has it (retrain/autodiff)
# Peak GPU memory is sampled with nvidia-smi throughout. A stage that fails, times out or
# cannot run is reported with the reason; later stages still run when they can.
# Offline machines: put the npm tarballs in DIAGD_NPM_CACHE (see setup.sh) and have the Go
# module cache filled; DIAGD_SKIP_APT=1 when the Debian packages are there.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$(date +%s)
budget=${DIAGD_CHECK_BUDGET:-470}
deadline=$((t0 + budget))
out_dir=${OUT:-$root/out}
report=$out_dir/device-report.md
work=${DIAGD_CHECK_WORK:-$root/out/device-check}
logs=$work/logs
mkdir -p "$out_dir" "$logs"
gpu_lib=$root/bin/libonnxruntime-gpu.so

stages=()   # "name|status|seconds|peak MiB|note" rows
skipped=()  # lines for the report
results=()  # "measure|value" rows
sampler=
bg=

say() { printf '\033[1m[device-check]\033[0m %s\n' "$*"; }
now() { date +%s; }
left() { echo $((deadline - $(now))); }

# GPU memory, sampled four times a second; a stage's peak is the max over its lines.
mem_log=$work/gpu-memory.csv
mem_lines() { [ -f "$mem_log" ] && wc -l <"$mem_log" || echo 0; }
mem_peak() { # FROM TO: peak MiB over sample lines FROM..TO
  awk -F', *' -v a="$1" -v b="$2" 'NR>=a && NR<=b && $2+0>m {m=$2+0} END {print m+0}' "$mem_log" 2>/dev/null
}

# stage NAME BUDGET COMMAND...: runs COMMAND with its log in $logs/NAME.log, under
# min(BUDGET, time left − 15 s); records status, time and peak GPU memory.
stage() {
  local name=$1 want=$2; shift 2
  local t l a b rc status note=""
  t=$(( $(left) - 15 ))
  if [ "$t" -lt 20 ]; then
    stages+=("$name|skipped|0|-|the ${budget}s deadline leaves no time")
    skipped+=("$name: the ${budget}s deadline was reached before it could start")
    return 1
  fi
  [ "$want" -lt "$t" ] && t=$want
  say "$name (timeout ${t}s)"
  a=$(mem_lines); l=$(now)
  timeout --kill-after=10 "$t" "$@" >"$logs/$name.log" 2>&1
  rc=$?
  b=$(mem_lines)
  case $rc in
    0) status=ok ;;
    124|137) status="timed out after ${t}s"; skipped+=("$name: timed out after ${t}s (log: $logs/$name.log)") ;;
    *) status="failed (exit $rc)"; note=$(grep -v '^\s*$' "$logs/$name.log" | tail -1 | cut -c1-200 | tr '|' '/') ;;
  esac
  stages+=("$name|$status|$(( $(now) - l ))|$(mem_peak "$((a + 1))" "$b")|$note")
  return "$rc"
}

# stop_bg ends the background export writer: the subshell and the bench it runs.
stop_bg() {
  [ -n "$bg" ] || return 0
  kill $(pgrep -P "$bg") "$bg" 2>/dev/null
  wait "$bg" 2>/dev/null
  bg=
}

write_report() {
  local gpu peak
  [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
  stop_bg
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null) || gpu=
  gpu=${gpu%%$'\n'*}
  peak=$(mem_peak 1 "$(mem_lines)")
  {
    echo "# diagd device check"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit $(git describe --always --dirty 2>/dev/null || echo unknown)"
    echo "- host: $(uname -n), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "- GPU: ${gpu:-none found}"
    echo "- total time: $(( $(now) - t0 )) s (deadline ${budget} s)"
    echo
    echo "## Results"
    echo
    echo "| measure | value |"
    echo "|---|---|"
    for r in "${results[@]}"; do echo "| ${r%%|*} | ${r#*|} |"; done
    echo "| peak GPU memory (whole check) | ${peak:-0} MiB |"
    echo
    echo "## Stages"
    echo
    echo "| stage | status | seconds | peak GPU MiB | note |"
    echo "|---|---|---|---|---|"
    for s in "${stages[@]}"; do echo "| ${s//|/ | } |"; done
    echo
    echo "## Skipped, and why"
    echo
    if [ ${#skipped[@]} -eq 0 ]; then echo "nothing"; fi
    for s in "${skipped[@]}"; do echo "- $s"; done
    if [ -f "$logs/version.log" ]; then
      echo
      echo "## diagd version"
      echo
      echo '```'
      cat "$logs/version.log"
      echo '```'
    fi
    echo
    echo "Logs: $logs"
  } >"$report"
  say "report: $report"
}
trap write_report EXIT

# 0. A GPU?
if ! nvidia-smi -L >"$logs/nvidia-smi.log" 2>&1; then
  skipped+=("everything: nvidia-smi finds no NVIDIA GPU ($(head -1 "$logs/nvidia-smi.log"))")
  exit 1
fi
nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -i "${DIAGD_DEVICE_ID:-0}" -lms 250 >"$mem_log" 2>/dev/null &
sampler=$!

# 1. Setup, the providers, the benchmark binary; the SDXL exports start in the background.
stage setup 240 bash scripts/setup.sh --gpu || skipped+=("setup failed: see $logs/setup.log")
if [ ! -e "$gpu_lib" ]; then
  skipped+=("all GPU stages: setup did not install bin/libonnxruntime-gpu.so")
  exit 1
fi
export DIAGD_ORT_LIB=$gpu_lib DIAGD_GPU=1
bin/diagd version >"$logs/version.log" 2>&1
if ! grep -q '^provider cuda: available' "$logs/version.log"; then
  skipped+=("all GPU stages: $(grep '^provider cuda' "$logs/version.log" || echo 'diagd version failed')")
  exit 1
fi
grep -q '^provider tensorrt: available' "$logs/version.log" ||
  skipped+=("TensorRT parts: $(grep '^provider tensorrt' "$logs/version.log")")
stage build-bench 90 go build -o "$work/bench" ./bench || exit 1
(
  for d in fp16 fp32; do
    flag=; [ "$d" = fp16 ] && flag=-fp16
    GOMAXPROCS=$(( $(nproc) / 2 + 1 )) "$work/bench" sdxlreal -prepare $flag -dir "$work/sdxl-$d" || exit 1
  done
) >"$logs/sdxl-prepare.log" 2>&1 &
bg=$!

# 2. GPU tests.
stage gpu-tests 150 go test -count=1 -timeout 140s -run 'TestGPU' -v ./detect/ ||
  skipped+=("some GPU tests failed: see $logs/gpu-tests.log")

# The exports must be complete before the timed stages (and before timing anything).
say "waiting for the SDXL stand-ins to be written"
t=$(( $(left) - 120 ))
waited=0
while kill -0 "$bg" 2>/dev/null && [ "$waited" -lt "$t" ]; do sleep 2; waited=$((waited + 2)); done
if kill -0 "$bg" 2>/dev/null; then
  skipped+=("SDXL: writing the real-size stand-ins did not finish in time (see $logs/sdxl-prepare.log)")
fi
stop_bg

# 3. Detect frames/s.
if stage detect-bench 150 "$work/bench" detect-providers -providers cpu,cuda,tensorrt-fp16 -time 3s -trt-cache "$work/trt"; then :; fi
while read -r l; do
  p=$(sed -n 's/.*provider=\([^ ]*\).*/\1/p' <<<"$l")
  if [[ "$l" == *skipped=* ]]; then
    skipped+=("detect on $p: ${l#*skipped=}")
  else
    results+=("detect frames/s, ResNet-50 704×256 batch 8, $p|$(sed -n 's/.*fps=\([^ ]*\) vs_cpu=\([^ ]*\) load_s=\([^ ]*\) max_dscore_vs_cpu=\([^ ]*\).*/\1 (×\2 CPU; load \3 s; max |Δscore| vs CPU \4)/p' <<<"$l")")
  fi
done < <(grep '^RESULT detect' "$logs/detect-bench.log" 2>/dev/null)

# 4. SDXL whole images.
for d in fp16 fp32; do
  flag=; [ "$d" = fp16 ] && flag=-fp16
  if [ ! -f "$work/sdxl-$d/diagd-standin.json" ]; then
    skipped+=("SDXL $d: its stand-in was not written")
    continue
  fi
  stage "sdxl-$d" 170 "$work/bench" sdxlreal -provider cuda $flag -steps 30 -warmup-steps 2 -dir "$work/sdxl-$d"
  l=$(grep '^RESULT sdxlreal' "$logs/sdxl-$d.log" 2>/dev/null)
  if [ -n "$l" ]; then
    results+=("seconds per SDXL image, 1024², $d, CUDA (29 UNet steps, CFG batch 2)|$(sed -n 's/.*s_per_image=\([^ ]*\) s_per_step=\([^ ]*\).*open_s=\([^ ]*\).*/\1 s (\2 s per step; sessions opened in \3 s)/p' <<<"$l")")
  else
    skipped+=("SDXL $d: no result (see $logs/sdxl-$d.log)")
  fi
done

# 5. A training step on CUDA, from the training-graph bench when this tree has it.
if "$work/bench" 2>&1 | grep -q 'trainstep'; then
  stage trainstep 60 "$work/bench" trainstep -provider cuda
  l=$(grep -i 'RESULT\|per step' "$logs/trainstep.log" 2>/dev/null | tail -1)
  results+=("training step on CUDA|${l:-no result line (see $logs/trainstep.log)}")
else
  results+=("training step on CUDA|skipped: not built (bench has no trainstep: retrain/autodiff is not in this tree)")
  skipped+=("training step: not built (bench has no trainstep)")
fi
exit 0
