#!/usr/bin/env bash
# Build Automat's images as automat/<target>:TAG (pipeline, webserver, daemon, api, render).
# The wheels are gathered here first (pip's cache serves what `make setup` fetched), so the build
# itself needs no PyPI; the base image is debian:bookworm-slim (make docker-engine brings one in
# where no registry is reachable).
#   docker/build.sh [TAG]    BLENDER_SOURCE=official (default) | pypi (the bpy wheel: tests, CI)
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-dev}
blender_source=${BLENDER_SOURCE:-official}
context=build/docker
rm -rf "$context" && mkdir -p "$context/wheels" "$context/render-wheels"
python=${PYTHON:-.venv/bin/python}
"$python" -m pip wheel --quiet --wheel-dir "$context/wheels" . 'setuptools>=69'
rm "$context"/wheels/automat_pipeline-*.whl  # the image installs this repository itself, editable
if [ "$blender_source" = pypi ]; then  # bpy and dagster-pipes (blender/requirements.txt)
    "$python" -m pip download --quiet --only-binary=:all: --dest "$context/render-wheels" -r blender/requirements.txt
    executable=/opt/blender/bin/python
else  # dagster-pipes only, for Blender's own Python
    "$python" -m pip download --quiet --only-binary=:all: --no-deps --dest "$context/render-wheels" \
        "$(grep '^dagster-pipes' blender/requirements.txt)"
    executable=/opt/blender/blender
fi
for target in pipeline webserver daemon api render proxy; do
    echo "automat/$target:$tag"
    DOCKER_BUILDKIT=0 docker build --quiet --network host --file docker/Dockerfile --target "$target" \
        --build-arg BLENDER_SOURCE="$blender_source" --build-arg BLENDER_EXECUTABLE="$executable" \
        --tag "automat/$target:$tag" . >/dev/null
done
