#!/bin/sh
# The render image's entrypoint (under tini): warm the GPU kernel cache, then run the command — a
# render run's `dagster api execute_run …`, the GPU check, or the render host's own re-probing.
#
# The warm-up (`automat render-host warm`) probes the GPU, renders once so Cycles compiles its GPU
# kernels into the caches on the automat_gpu_cache volume, records the probe in render_hosts, and
# writes $AUTOMAT_RENDER_STATUS, which the image's HEALTHCHECK waits for. A run container gives it
# AUTOMAT_WARM_TIMEOUT seconds (default 240, inside the run monitor's start timeout): a card's
# first compile, which takes longer, is the render-host service's (docker-compose.yml). A failed or
# timed-out warm-up is logged and the command runs anyway: it may still render, on the CPU.
set -u
case "$*" in
*"render-host warm"*) ;;  # the command is the warm-up itself
*)
    automat render-host warm --timeout "${AUTOMAT_WARM_TIMEOUT:-240}" --status-file "$AUTOMAT_RENDER_STATUS" >&2 \
        || echo "render-host warm-up failed (see above); the command runs anyway" >&2
    ;;
esac
exec "$@"
