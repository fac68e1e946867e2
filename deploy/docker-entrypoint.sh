#!/bin/sh
# Container entry point: the first argument picks the role; anything else runs as given
# (KubeRay replaces the entry point with its own `ray start` command, so Ray pods never come here).
#   registry [flags]      cdserve registry (gRPC concept registry)       e.g. registry --config /etc/cdserve/registry/registry.yaml
#   training [flags]      cdserve training serve (gRPC training service) e.g. training --config /etc/cdserve/training/training.yaml
#   serve [CONFIG]        a one-node Ray with the Generator Serve app (default /app/deploy/serve-local.yaml)
#   up [flags]            cdserve up: Ray + Generator + registry + training service in one container
#                         (binds 127.0.0.1: run with --network host), data in /var/lib/cdserve
#   job --spec JOB.json   one training job in this container (python -m training.job)
set -eu

role="${1:-}"
case "$role" in
    registry)
        shift
        exec cdserve registry "$@"
        ;;
    training)
        shift
        exec cdserve training serve "$@"
        ;;
    serve)
        shift
        config="${1:-/app/deploy/serve-local.yaml}"
        ray start --head --dashboard-host=0.0.0.0 --disable-usage-stats \
            --metrics-export-port="${RAY_METRICS_EXPORT_PORT:-8080}"
        trap 'ray stop; exit 0' TERM INT
        serve deploy "$config"
        echo "serving $config; Ray dashboard on :8265, metrics on :${RAY_METRICS_EXPORT_PORT:-8080}"
        while :; do sleep 3600 & wait $!; done
        ;;
    up)
        shift
        exec cdserve up --config /app/deploy/serve-local.yaml --data /var/lib/cdserve "$@"
        ;;
    job)
        shift
        exec python -m training.job "$@"
        ;;
    "")
        exec cdserve --help
        ;;
    *)
        exec "$@"
        ;;
esac
