#!/bin/sh
# Install Blender 5.0.1 at /opt/blender (render image). $1: official | pypi; $2: the tarball's sha256.
set -eu
source=$1 sha256=${2:-}
version=5.0.1
case "$source" in
official)
    # The tarball carries Blender's own libraries; it still loads the system's X11/Wayland clients.
    apt-get update
    apt-get install -y --no-install-recommends ca-certificates curl xz-utils libx11-6 libxext6 libwayland-client0 \
        libwayland-cursor0 libwayland-egl1 libdecor-0-0
    rm -rf /var/lib/apt/lists/*
    tarball=blender-$version-linux-x64.tar.xz
    url=https://download.blender.org/release/Blender5.0
    curl -fsSL -o "/tmp/$tarball" "$url/$tarball"
    if [ -z "$sha256" ]; then
        sha256=$(curl -fsSL "$url/blender-$version.sha256" | awk -v f="$tarball" '$2 == f {print $1}')
    fi
    [ -n "$sha256" ] || { echo "no sha256 for $tarball" >&2; exit 1; }
    echo "$sha256  /tmp/$tarball" | sha256sum -c -
    mkdir -p /opt/blender
    tar -xJf "/tmp/$tarball" -C /opt/blender --strip-components=1
    rm "/tmp/$tarball"
    # blender/render.py speaks Dagster Pipes: dagster-pipes (pure Python, no dependencies) into Blender's Python.
    python3 -m zipfile -e /tmp/blender/wheels/dagster_pipes-*.whl /opt/blender/5.0/python/lib/python3.11/site-packages/
    /opt/blender/blender --background --factory-startup --python-exit-code 1 \
        --python-expr "import bpy, dagster_pipes; print('Blender', bpy.app.version_string)"
    ;;
pypi)
    python3 -m venv /opt/blender
    /opt/blender/bin/pip install --no-cache-dir --no-index --find-links /tmp/blender/wheels /tmp/blender/wheels/*.whl
    /opt/blender/bin/python -c "import bpy; print('bpy', bpy.app.version_string)"
    ;;
*)
    echo "BLENDER_SOURCE must be official or pypi, not '$source'" >&2
    exit 2
    ;;
esac
