#!/usr/bin/env bash
# Multi-node training under Slurm:
#   bash scripts/srun_multi_nodes.sh TRAIN_SCRIPT NNODES [args ...]
# Outside an allocation it asks for one (salloc: NNODES exclusive nodes) and runs itself inside it; inside one (sbatch,
# salloc) it uses the first NNODES nodes, which must have been given their GPUs (--gpus-per-node or --gres), and moves
# itself onto the first if it is not on a node (salloc runs its command where it was called). It starts a Ray head on
# the first node and Ray workers on the others (one srun step each, alive as long as the node's Ray), waits until every
# node and GPU has joined, runs TRAIN_SCRIPT (any examples/*.sh) on the first node against that cluster (RAY_ADDRESS
# exported) with NNODES / N_GPUS_PER_NODE in its environment and trainer.nnodes / trainer.n_gpus_per_node appended to
# its arguments, and stops the cluster's processes on every node on exit, failure or interrupt. Exits with the
# training script's status.
# Knobs (environment):
#   PARTITION, ACCOUNT      salloc's --partition / --account (default: the site's)
#   JOB_TIME (04:00:00), JOB_NAME (longrl)
#   GPUS_PER_NODE (8)       GPUs asked per node, offered to Ray, and trainer.n_gpus_per_node
#   CPUS_PER_NODE           CPUs asked per node (salloc --cpus-per-task) and offered to Ray (default: all the node has)
#   CPU_ONLY=1              nodes without GPUs: the trainer places one rank per CPU
#   RAY_PORT (6379)         the head's GCS port
#   DASHBOARD_PORT (8265)   the Ray dashboard's port on the head; empty: no dashboard
#   DASHBOARD_HOST          the dashboard's interface (127.0.0.1: the head only, reach it by an SSH tunnel;
#                           0.0.0.0 opens it, and the job submission it serves, to the network)
#   WAIT_TIMEOUT (600)      seconds for every node and GPU to join before giving up (naming what joined)
#   SALLOC_ARGS, SRUN_ARGS  extra salloc / srun options; RAY_START_ARGS: extra `ray start` options
#   PYTHON (python3)        the interpreter with longrl installed, on every node
#   RAY_AUTH_TOKEN          Ray's token authentication: every node and the job need the head's token, kept in
#                           ~/.ray/auth_token (made on the head's first start); without a shared home, export it
#                           on every node
set -euo pipefail
TRAIN_SCRIPT=${1:?usage: $0 TRAIN_SCRIPT NNODES [args ...]}
NNODES=${2:?usage: $0 TRAIN_SCRIPT NNODES [args ...]}
shift 2
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}
DASHBOARD_PORT=${DASHBOARD_PORT-8265}
PYTHON=${PYTHON:-python3}
# Ray 2.60 starts clusters with token authentication; every node and the training job must use it.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}

if [ -z "${SLURM_JOB_ID:-}" ]; then
    alloc=(--nodes="${NNODES}" --ntasks-per-node=1 --exclusive --time="${JOB_TIME:-04:00:00}"
           --job-name="${JOB_NAME:-longrl}")
    if [ "${CPU_ONLY:-0}" != 1 ]; then alloc+=(--gpus-per-node="${GPUS_PER_NODE}"); fi
    if [ -n "${CPUS_PER_NODE:-}" ]; then alloc+=(--cpus-per-task="${CPUS_PER_NODE}"); fi
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
# Every step is one task on one node (-w), sharing the node with the other steps. A one-task step gets one CPU unless
# told otherwise, and the Ray workers (or the trainer) would all share it; SLURM_JOB_CPUS_PER_NODE reads "64(x2)".
STEP=(srun --nodes=1 --ntasks=1 --overlap)
STEP_CPUS=${CPUS_PER_NODE:-${SLURM_JOB_CPUS_PER_NODE:-}}
if [ -n "${STEP_CPUS}" ]; then STEP+=(--cpus-per-task="${STEP_CPUS%%[(,]*}"); fi
# shellcheck disable=SC2206
STEP+=(${SRUN_ARGS:-})
if [ -z "${SLURMD_NODENAME:-}" ]; then
    "${STEP[@]}" -w "${NODES[0]}" bash "$0" "${TRAIN_SCRIPT}" "${NNODES}" "$@"
    exit
fi
CLUSTER=("${PYTHON}" -m longrl.controller.cluster)
node_args=(--ranks "${GPUS_PER_NODE}")
if [ "${CPU_ONLY:-0}" = 1 ]; then node_args+=(--cpu-only); fi
if [ -n "${CPUS_PER_NODE:-}" ]; then node_args+=(--num-cpus "${CPUS_PER_NODE}"); fi
head_args=(--port "${RAY_PORT}")
if [ -n "${DASHBOARD_PORT}" ]; then
    head_args+=(--dashboard-port "${DASHBOARD_PORT}" --dashboard-host "${DASHBOARD_HOST:-127.0.0.1}")
fi

ADDRESS="$("${STEP[@]}" -w "${NODES[0]}" "${CLUSTER[@]}" ip):${RAY_PORT}"
steps=()  # the srun processes of the nodes' Ray
teardown() {  # the nodes' steps first (Slurm ends what they started), then whatever of the cluster outlived them
    local status=$?
    if [ "${#steps[@]}" -gt 0 ]; then
        kill "${steps[@]}" 2> /dev/null || true
        wait "${steps[@]}" 2> /dev/null || true
    fi
    for node in "${NODES[@]}"; do "${STEP[@]}" -w "${node}" "${CLUSTER[@]}" stop --port "${RAY_PORT}" || true; done
    exit "${status}"
}
trap teardown EXIT
trap 'exit 130' INT TERM

echo "srun_multi_nodes.sh: Ray head on ${NODES[0]} at ${ADDRESS}, workers on ${NODES[*]:1}"
"${STEP[@]}" -w "${NODES[0]}" "${CLUSTER[@]}" head "${head_args[@]}" "${node_args[@]}" --block &
steps+=($!)
"${CLUSTER[@]}" wait --address "${ADDRESS}" --nodes 1 --ranks "${GPUS_PER_NODE}" --timeout "${WAIT_TIMEOUT:-600}"
for node in "${NODES[@]:1}"; do
    "${STEP[@]}" -w "${node}" "${CLUSTER[@]}" worker --address "${ADDRESS}" "${node_args[@]}" --block &
    steps+=($!)
done
"${CLUSTER[@]}" wait --address "${ADDRESS}" --nodes "${NNODES}" --ranks "${GPUS_PER_NODE}" \
    --timeout "${WAIT_TIMEOUT:-600}"
RAY_ADDRESS="${ADDRESS}" NNODES="${NNODES}" N_GPUS_PER_NODE="${GPUS_PER_NODE}" \
    bash "${TRAIN_SCRIPT}" "$@" trainer.nnodes="${NNODES}" trainer.n_gpus_per_node="${GPUS_PER_NODE}"
