#!/usr/bin/env bash
# Multi-node training on machines started by hand (no Slurm). Run it on every node:
#   head:    NNODES=2 NODE_RANK=0 bash scripts/train_multi_nodes.sh TRAIN_SCRIPT [args ...]
#   others:  NNODES=2 NODE_RANK=1 HEAD_ADDR=<head ip> bash scripts/train_multi_nodes.sh
# The head starts Ray, waits until all NNODES nodes and their GPUs have joined, runs TRAIN_SCRIPT (any examples/*.sh)
# against that cluster (RAY_ADDRESS exported) with NNODES / N_GPUS_PER_NODE in its environment and trainer.nnodes /
# trainer.n_gpus_per_node appended to its arguments, and stops the cluster's processes on this machine on exit,
# failure or interrupt. A worker node's Ray stays in the foreground (it may start before the head: it keeps trying to
# reach it) and ends when the head's cluster goes away.
# Knobs (environment):
#   NNODES, NODE_RANK (0)   the number of nodes and this node's place (0: the head)
#   HEAD_ADDR               the head's address (worker nodes)
#   GPUS_PER_NODE (8)       GPUs each node offers to Ray, and trainer.n_gpus_per_node
#   CPUS_PER_NODE           CPUs each node offers to Ray (default: all the machine has)
#   CPU_ONLY=1              nodes without GPUs: the trainer places one rank per CPU
#   RAY_PORT (6379)         the head's GCS port
#   DASHBOARD_PORT (8265)   the Ray dashboard's port on the head; empty: no dashboard
#   DASHBOARD_HOST          the dashboard's interface (127.0.0.1: the head only, reach it by an SSH tunnel;
#                           0.0.0.0 opens it, and the job submission it serves, to the network)
#   WAIT_TIMEOUT (600)      seconds for every node and GPU to join before giving up (naming what joined)
#   RAY_START_ARGS          extra `ray start` options; PYTHON (python3): the interpreter with longrl installed
#   RAY_AUTH_TOKEN          Ray's token authentication: every node and the job need the head's token, kept in
#                           ~/.ray/auth_token (made on the head's first start); without a shared home, export it
#                           on every node
set -euo pipefail
NNODES=${NNODES:?set NNODES to the number of nodes}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
RAY_PORT=${RAY_PORT:-6379}
DASHBOARD_PORT=${DASHBOARD_PORT-8265}
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
head_args=(--port "${RAY_PORT}")
if [ -n "${DASHBOARD_PORT}" ]; then
    head_args+=(--dashboard-port "${DASHBOARD_PORT}" --dashboard-host "${DASHBOARD_HOST:-127.0.0.1}")
fi
trap 'cluster stop --port "${RAY_PORT}" || true' EXIT
cluster head "${head_args[@]}" "${node_args[@]}"
ADDRESS="$(cluster ip):${RAY_PORT}"  # the address the head announces, which the workers reach too
cluster wait --address "${ADDRESS}" --nodes "${NNODES}" --ranks "${GPUS_PER_NODE}" --timeout "${WAIT_TIMEOUT:-600}"
RAY_ADDRESS="${ADDRESS}" NNODES="${NNODES}" N_GPUS_PER_NODE="${GPUS_PER_NODE}" \
    bash "${TRAIN_SCRIPT}" "$@" trainer.nnodes="${NNODES}" trainer.n_gpus_per_node="${GPUS_PER_NODE}"
