#!/usr/bin/env bash
# On the GPU machine, from the repository root: unpack the payload (bench/device/build_payload.py)
# next to the machine's own torch, then run the whole GPU check. Usage: bench/device/run.sh OUT [check args]
# The check writes some twenty files to OUT; with CDSERVE_BACK=DIR, DIR gets its report
# (gpu-<device>.json and .md), imports.txt and all of OUT as one check-files.tar.gz: four files, for a
# machine that hands back only a few.
set -euo pipefail
out=${1:?usage: bench/device/run.sh OUT [check args]}
shift
payload=bench/device/payload
deps=${CDSERVE_DEPS:-/tmp/cdserve-deps}
started=$(date +%s)
mkdir -p "$deps" "$out"
for archive in "$payload"/*.tar.xz; do tar -xJf "$archive" -C "$deps"; done  # Ray, the other packages (and the train deps)
export PYTHONPATH="$deps:$PWD${PYTHONPATH:+:$PYTHONPATH}" PATH="$deps/bin:$PATH" RAY_AUTH_MODE=disabled
python - <<'PY' | tee "$out/imports.txt"
import importlib
for name in ("ray", "ray.serve", "ray.train.torch", "diffusers", "pydantic", "fastapi", "uvicorn", "grpc_health", "grpc_reflection", "torch"):
    try:
        module = importlib.import_module(name)
        print(name, getattr(module, "__version__", "ok"))
    except Exception as e:  # what is missing shows here first
        print(name, "MISSING:", type(e).__name__, e)
PY
echo "unpacked in $(( $(date +%s) - started )) s" | tee -a "$out/imports.txt"
status=0
python -m bench.device.check --out "$out" "$@" || status=$?
if [ -n "${CDSERVE_BACK:-}" ]; then
    mkdir -p "$CDSERVE_BACK"
    cp "$out"/gpu-*.json "$out"/gpu-*.md "$out"/imports.txt "$CDSERVE_BACK"/ || true
    tar -czf "$CDSERVE_BACK/check-files.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
fi
exit "$status"
