#!/usr/bin/env bash
# Multi-node training under Slurm:
#   bash scripts/srun_multi_nodes.sh TRAIN_SCRIPT NNODES [args ...]
# Outside an allocation it asks for one (salloc: NNODES exclusive nodes) and runs itself inside it. Inside, it starts a
# Ray head on the first node and Ray workers on the others (one srun step each, alive as long as the node's Ray),
# waits until every node and GPU has joined, runs TRAIN_SCRIPT (any examples/*.sh) on this node against that cluster
# with NNODES / N_GPUS_PER_NODE in its environment and trainer.nnodes / trainer.n_gpus_per_node appended to its
# arguments, and tears the cluster down on exit, failure or interrupt. Exits with the training script's status.
# Knobs: PARTITION, ACCOUNT, GPUS_PER_NODE (8), CPUS_PER_NODE (CPUs Ray offers per node; default all), JOB_TIME
# (04:00:00), JOB_NAME (longrl), RAY_PORT (6379), WAIT_TIMEOUT (600 s), SALLOC_ARGS / SRUN_ARGS (extra options),
# RAY_START_ARGS (extra `ray start` options), CPU_ONLY=1 (nodes without GPUs: one rank per CPU), PYTHON (python3).
set -euo pipefail
TRAIN_SCRIPT=${1:?usage: $0 TRAIN_SCRIPT NNODES [args ...]}
NNODES=${2:?usage: $0 TRAIN_SCRIPT NNODES [args ...]}
shift 2
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}
# Ray 2.60 starts clusters with token authentication; every node and the training job must use it.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

if [ -z "${SLURM_JOB_ID:-}" ]; then
    alloc=(--nodes="${NNODES}" --ntasks-per-node=1 --exclusive --time="${JOB_TIME:-04:00:00}"
           --job-name="${JOB_NAME:-longrl}")
    if [ "${CPU_ONLY:-0}" != 1 ]; then alloc+=(--gpus-per-node="${GPUS_PER_NODE}"); fi
    if [ -n "${PARTITION:-}" ]; then alloc+=(--partition="${PARTITION}"); fi
    if [ -n "${ACCOUNT:-}" ]; then alloc+=(--account="${ACCOUNT}"); fi
    # shellcheck disable=SC2086
    exec salloc "${alloc[@]}" ${SALLOC_ARGS:-} bash "$0" "${TRAIN_SCRIPT}" "${NNODES}" "$@"
fi

mapfile -t NODES < <(scontrol show hostnames "${SLURM_JOB_NODELIST}")
if [ "${#NODES[@]}" -lt "${NNODES}" ]; then
    echo "srun_multi_nodes.sh: the allocation has ${#NODES[@]} node(s) (${NODES[*]}), NNODES=${NNODES} asked" >&2
    exit 2
fi
NODES=("${NODES[@]:0:${NNODES}}")
on_node() {  # on_node NODE COMMAND...: one single-task step on NODE
    local node=$1
    shift
    # shellcheck disable=SC2086
    srun --nodes=1 --ntasks=1 --overlap -w "${node}" ${SRUN_ARGS:-} "$@"
}
cluster() { "${PYTHON:-python3}" -m longrl.controller.cluster "$@"; }
node_args=(--ranks "${GPUS_PER_NODE}")
if [ "${CPU_ONLY:-0}" = 1 ]; then node_args+=(--cpu-only); fi
if [ -n "${CPUS_PER_NODE:-}" ]; then node_args+=(--num-cpus "${CPUS_PER_NODE}"); fi

HEAD_IP=$(on_node "${NODES[0]}" hostname --ip-address | awk '{print $1}')
ADDRESS="${HEAD_IP}:${RAY_PORT}"
steps=()
teardown() {
    local status=$?
    for node in "${NODES[@]}"; do on_node "${node}" "${PYTHON:-python3}" -m longrl.controller.cluster stop \
        > /dev/null 2>&1 || true; done
    if [ "${#steps[@]}" -gt 0 ]; then kill "${steps[@]}" 2> /dev/null || true; wait "${steps[@]}" 2> /dev/null || true; fi
    exit "${status}"
}
trap teardown EXIT
trap 'exit 130' INT TERM

on_node "${NODES[0]}" "${PYTHON:-python3}" -m longrl.controller.cluster head --port "${RAY_PORT}" "${node_args[@]}" \
    --block &
steps+=($!)
cluster wait --address "${ADDRESS}" --nodes 1 --ranks "${GPUS_PER_NODE}" --timeout "${WAIT_TIMEOUT:-600}"
for node in "${NODES[@]:1}"; do
    on_node "${node}" "${PYTHON:-python3}" -m longrl.controller.cluster worker --address "${ADDRESS}" \
        "${node_args[@]}" --block &
    steps+=($!)
done
cluster wait --address "${ADDRESS}" --nodes "${NNODES}" --ranks "${GPUS_PER_NODE}" --timeout "${WAIT_TIMEOUT:-600}"
RAY_ADDRESS="${ADDRESS}" NNODES="${NNODES}" N_GPUS_PER_NODE="${GPUS_PER_NODE}" \
    bash "${TRAIN_SCRIPT}" "$@" trainer.nnodes="${NNODES}" trainer.n_gpus_per_node="${GPUS_PER_NODE}"
