#!/usr/bin/env bash
# On the GPU machine, from the repository root: unpack the payload (bench/device/build_payload.py)
# next to the machine's own torch, then run the whole GPU check. Usage: bench/device/run.sh OUT [check args]
set -euo pipefail
out=${1:?usage: bench/device/run.sh OUT [check args]}
shift
payload=bench/device/payload
deps=${CDSERVE_DEPS:-/tmp/cdserve-deps}
started=$(date +%s)
mkdir -p "$deps" "$out"
for archive in "$payload"/*.tar.xz; do tar -xJf "$archive" -C "$deps"; done
python -m pip install -q --no-index --no-deps --target "$deps" "$payload"/wheels/*.whl 2>&1 | tail -3
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
python -m bench.device.check --out "$out" "$@"
