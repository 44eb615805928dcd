#!/usr/bin/env bash
# GPU benchmark and check for a render host: does Cycles find and use the GPU, how long does the
# first render take to compile its kernels, and how fast are a 2048 px production still and a
# 36-frame 512 px turntable on it against this repository's CPU figures for the same model and
# settings (bench/results/render.json, the studio look)? Prints the figures, writes
# bench/results/gpu_bench.json and bench/results/gpu_bench.log.
#
#   bench/gpu_bench.sh        from the repository root, or in the render image (/opt/automat)
#
# The render environment: AUTOMAT_BLENDER (a Blender 5.0.1 binary, or a Python with bpy 5.0.1);
# unset, .venv-render/bin/python, made first if missing (pip install -r blender/requirements.txt;
# WHEELS=folder installs from there without an index, for a machine that reaches no registry).
# GPU_BENCH_DEVICE: gpu (default) or cpu. GPU_BENCH_STILL "size samples" (default "2048 32"),
# GPU_BENCH_TURNTABLE "size frames samples" ("512 36 16"): the CPU figures' settings.
# GPU_BENCH_WARM_TIMEOUT: seconds for the first render (default 1800: on an H100 or H200 the
# driver compiles Cycles' kernels for minutes); GPU_BENCH_TIMEOUT: per measured render (900).
# GPU_BENCH_OUT: the results file; GPU_BENCH_CPU_FIGURES: the CPU figures (bench/results/render.json). The model is bench/models/as1.glb (the as1 assembly's
# production GLB with the shipped library), the one bench/run.py render measures on the CPU.
# Each figure is one cold Blender process, as a render run is; the kernels stay in the CUDA and
# OptiX caches (CUDA_CACHE_PATH, OPTIX_CACHE_PATH) between them.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
OUT=${GPU_BENCH_OUT:-bench/results/gpu_bench.json}
DEVICE=${GPU_BENCH_DEVICE:-gpu}
read -r STILL_SIZE STILL_SAMPLES <<<"${GPU_BENCH_STILL:-2048 32}"
read -r TURN_SIZE TURN_FRAMES TURN_SAMPLES <<<"${GPU_BENCH_TURNTABLE:-512 36 16}"
MODEL=bench/models/as1.glb
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$(dirname "$OUT")"
LOG=${OUT%.json}.log
: >"$LOG"

if [[ -z ${AUTOMAT_BLENDER:-} && ! -x .venv-render/bin/python ]]; then
  echo "making the render environment (.venv-render)" | tee -a "$LOG"
  python3.11 -m venv .venv-render
  .venv-render/bin/pip install --quiet ${WHEELS:+--no-index --find-links "$WHEELS"} -r blender/requirements.txt
fi
BLENDER=${AUTOMAT_BLENDER:-.venv-render/bin/python}
if [[ $(basename "$BLENDER") == python* ]]; then launch=("$BLENDER")  # the bpy module
else launch=("$BLENDER" --background --factory-startup --python); fi
"$PYTHON" -c 'import json, sys; sys.path.insert(0, "."); from automat_pipeline.materials import FALLBACK, LIBRARY, for_blender
print(json.dumps(for_blender({m.name: m for m in LIBRARY}, FALLBACK)))' >"$WORK/library.json"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee -a "$LOG"

rows=()
measure() {  # name timeout render.py-arguments...: one cold Blender process
  local name=$1 timeout=$2; shift 2
  local started wall line
  started=$(date +%s.%N)
  line=$(timeout "$timeout" "${launch[@]}" blender/render.py -- "$MODEL" "$WORK/$name" --device "$DEVICE" \
    --materials "$WORK/library.json" --label "$name" "$@" 2>"$WORK/log" | grep '^AUTOMAT_RESULT ' || true)
  wall=$("$PYTHON" -c "import sys; print(round($(date +%s.%N) - $started, 2))")
  grep -h '^\[GPU_PROBE\]' "$WORK/log" | sort -u | tee -a "$LOG" || true
  if [[ -z $line ]]; then
    echo "$name: failed after $wall s: $(grep -m1 '^error:' "$WORK/log" || tail -n1 "$WORK/log")" | tee -a "$LOG"
    rows+=("{\"what\": \"$name\", \"wall\": $wall, \"error\": true}")
    return
  fi
  echo "$name: wall $wall s, $(echo "$line" | grep -o '"render_seconds": [0-9.]*'), $(echo "$line" | grep -o '"device": "[^"]*", "backend": "[^"]*"')" | tee -a "$LOG"
  rows+=("{\"what\": \"$name\", \"wall\": $wall, \"result\": ${line#AUTOMAT_RESULT }}")
}

# The first render compiles (or loads from the cache) the GPU kernels: timed on its own.
measure warm-up.png "${GPU_BENCH_WARM_TIMEOUT:-1800}" --size 64 --samples 1 --engine cycles
measure "still-${STILL_SIZE}.png" "${GPU_BENCH_TIMEOUT:-900}" --size "$STILL_SIZE" --samples "$STILL_SAMPLES" --engine cycles
measure "turntable-${TURN_SIZE}.mp4" "${GPU_BENCH_TIMEOUT:-900}" --size "$TURN_SIZE" --frames "$TURN_FRAMES" \
  --samples "$TURN_SAMPLES" --engine cycles --opaque

(IFS=,; echo "[${rows[*]}]") >"$WORK/rows.json"
"$PYTHON" - "$WORK/rows.json" "$OUT" "$DEVICE" "$STILL_SIZE" "$TURN_SIZE" "$TURN_FRAMES" \
  "${GPU_BENCH_CPU_FIGURES:-bench/results/render.json}" <<'PY' | tee -a "$LOG"
"""Beside the CPU figures of bench/results/render.json (same model, look and settings)."""
import json, platform, sys, time
from pathlib import Path
rows, (out, device, still, turn, frames, figures) = json.loads(Path(sys.argv[1]).read_text()), sys.argv[2:]
cpu = {}
if Path(figures).is_file():
    for r in json.loads(Path(figures).read_text())["rows"]:
        if r.get("look") == "studio" and r["engine"] == "cycles":
            cpu[r["what"]] = r
compare = {f"still-{still}.png": f"still {still}px", f"turntable-{turn}.mp4": f"turntable {turn}px {frames} frames"}
for row in rows:
    figure = cpu.get(compare.get(row["what"], ""))
    if figure and "result" in row:
        row["cpu_seconds_here"] = figure["in_blender"]
        row["speedup"] = round(figure["in_blender"] / row["result"]["render_seconds"], 2)
        print(f"{row['what']}: {row['result']['render_seconds']} s on {row['result']['device']} against "
              f"{figure['in_blender']} s on the CPU of {figures}: {row['speedup']}x")
document = {"benchmark": "gpu_bench", "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": platform.node(), "device": device, "cpu_figures": figures, "rows": rows}
Path(out).write_text(json.dumps(document, indent=1))
print(f"-> {out}")
PY
