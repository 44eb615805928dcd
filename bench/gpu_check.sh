#!/usr/bin/env bash
# GPU check for a render host: does Cycles find and use the NVIDIA GPU (OptiX, else CUDA), and how
# much faster than the CPU is it? Finishes in under 5 minutes; prints the figures and writes
# bench/results/gpu_check.json.
#
#   bench/gpu_check.sh      AUTOMAT_BLENDER: a Blender 5.0.1 binary or a Python with bpy 5.0.1
#                           (default: the render environment, .venv-render/bin/python);
#                           GPU_CHECK_SPECS: "device size samples;..." (default: GPU and CPU at
#                           256 px/16 spp and 2048 px/64 spp); GPU_CHECK_OUT: the results file;
#                           GPU_CHECK_TIMEOUT: seconds per render (default 120; a first GPU render
#                           may compile Cycles' kernels for the card).
#
# The model is made by Blender itself (three nested tori, metal and plastic), so the check needs
# nothing but Blender. Each figure is one cold Blender process, as a render run is.
set -euo pipefail
cd "$(dirname "$0")/.."
BLENDER=${AUTOMAT_BLENDER:-.venv-render/bin/python}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

if [[ $(basename "$BLENDER") == python* ]]; then launch=("$BLENDER")  # the bpy module
else launch=("$BLENDER" --background --factory-startup --python); fi
SPECS=${GPU_CHECK_SPECS:-"gpu 256 16;cpu 256 16;gpu 2048 64;cpu 2048 64"}
OUT=${GPU_CHECK_OUT:-bench/results/gpu_check.json}
TIMEOUT=${GPU_CHECK_TIMEOUT:-120}
mkdir -p "$(dirname "$OUT")"

cat >"$WORK/model.py" <<'PY'
import sys, bpy
bpy.ops.wm.read_factory_settings(use_empty=True)
for i, (metal, rough) in enumerate(((1.0, 0.35), (1.0, 0.12), (0.0, 0.55))):
    bpy.ops.mesh.primitive_torus_add(major_radius=0.05 + 0.012 * i, minor_radius=0.006, location=(0, 0, 0.01 * i))
    material = bpy.data.materials.new(f"mat{i}")
    bsdf = material.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Metallic"].default_value, bsdf.inputs["Roughness"].default_value = metal, rough
    bpy.context.object.data.materials.append(material)
bpy.ops.export_scene.gltf(filepath=sys.argv[-1], export_format="GLB")
PY
"${launch[@]}" "$WORK/model.py" -- "$WORK/model.glb" >/dev/null 2>&1

results=()
IFS=';' read -ra specs <<<"$SPECS"
for spec in "${specs[@]}"; do
  read -r device size samples <<<"$spec"
  started=$(date +%s.%N)
  line=$(timeout "$TIMEOUT" "${launch[@]}" blender/render.py -- "$WORK/model.glb" "$WORK/$device-$size.png" \
    --device "$device" --size "$size" --samples "$samples" 2>"$WORK/log" | grep '^AUTOMAT_RESULT ' || true)
  wall=$(awk "BEGIN { printf \"%.2f\", $(date +%s.%N) - $started }")
  grep -h '^\[GPU_PROBE\]' "$WORK/log" || true
  if [[ -z $line ]]; then
    echo "$device ${size}px: failed: $(grep -m1 '^error:' "$WORK/log" || tail -n1 "$WORK/log")"
    results+=("{\"requested\": \"$device\", \"size\": $size, \"wall\": $wall, \"error\": true}")
    continue
  fi
  json=${line#AUTOMAT_RESULT }
  echo "$device ${size}px ${samples} spp: wall ${wall} s, $(echo "$json" | grep -o '"render_seconds": [0-9.]*'), $(echo "$json" | grep -o '"device": "[^"]*", "backend": "[^"]*"')"
  results+=("{\"requested\": \"$device\", \"wall\": $wall, \"result\": $json}")
done
(IFS=,; echo "{\"benchmark\": \"gpu_check\", \"when\": \"$(date -u +%FT%TZ)\", \"host\": \"$(hostname)\", \"gpu\": \"$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo none)\", \"rows\": [${results[*]}]}") \
  >"$OUT"
echo "-> $OUT"
