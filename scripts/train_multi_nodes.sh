#!/usr/bin/env bash
# Multi-node training on machines started by hand (no Slurm). Run it on every node, the head first:
#   head:    NNODES=2 NODE_RANK=0 bash scripts/train_multi_nodes.sh TRAIN_SCRIPT [args ...]
#   others:  NNODES=2 NODE_RANK=1 HEAD_ADDR=<head ip> bash scripts/train_multi_nodes.sh
# The head starts Ray, waits until all NNODES nodes and their GPUs have joined, runs TRAIN_SCRIPT (any examples/*.sh)
# against that cluster with NNODES / N_GPUS_PER_NODE in its environment and trainer.nnodes / trainer.n_gpus_per_node
# appended to its arguments, and stops Ray on exit, failure or interrupt. A worker node's Ray stays in the foreground
# and ends when the head's cluster goes away.
# Knobs: GPUS_PER_NODE (8: the trainer's ranks per node), CPU_ONLY=1 (no GPUs: one rank per CPU), CPUS_PER_NODE
# (CPUs each node offers; default all), HEAD_ADDR (workers), RAY_PORT (6379), WAIT_TIMEOUT (600 s), RAY_START_ARGS
# (extra `ray start` options), PYTHON (python3).
set -euo pipefail
NNODES=${NNODES:?set NNODES to the number of nodes}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}
# Ray 2.60 starts clusters with token authentication; the training job must use it too.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
cluster() { "${PYTHON:-python3}" -m longrl.controller.cluster "$@"; }
node_args=(--ranks "${GPUS_PER_NODE}")
if [ "${CPU_ONLY:-0}" = 1 ]; then node_args+=(--cpu-only); fi
if [ -n "${CPUS_PER_NODE:-}" ]; then node_args+=(--num-cpus "${CPUS_PER_NODE}"); fi

if [ "${NODE_RANK}" != 0 ]; then
    exec "${PYTHON:-python3}" -m longrl.controller.cluster worker \
        --address "${HEAD_ADDR:?set HEAD_ADDR to the address of the head node}:${RAY_PORT}" "${node_args[@]}" --block
fi

TRAIN_SCRIPT=${1:?usage: NNODES=N NODE_RANK=0 $0 TRAIN_SCRIPT [args ...]}
shift
trap 'cluster stop > /dev/null 2>&1 || true' EXIT
cluster head --port "${RAY_PORT}" "${node_args[@]}"
ADDRESS="127.0.0.1:${RAY_PORT}"  # this machine is the head
cluster wait --address "${ADDRESS}" --nodes "${NNODES}" --ranks "${GPUS_PER_NODE}" --timeout "${WAIT_TIMEOUT:-600}"
RAY_ADDRESS="${ADDRESS}" NNODES="${NNODES}" N_GPUS_PER_NODE="${GPUS_PER_NODE}" \
    bash "${TRAIN_SCRIPT}" "$@" trainer.nnodes="${NNODES}" trainer.n_gpus_per_node="${GPUS_PER_NODE}"
