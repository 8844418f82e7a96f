#!/usr/bin/env bash
# Teacher outputs stored (tools/dump_teacher_outputs.py) on one machine, batches
# split across the processes (one per GPU) by torchrun.
#   bash tools/dist_dump.sh CONFIG GPUS --out DIR [dump_teacher_outputs.py options]
# NCCL on GPU machines, gloo on CPU-only ones.
# NNODES, NODE_RANK, MASTER_ADDR and PORT allow multi-node runs.
set -euo pipefail
source "$(dirname "$0")/find_python.sh"
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG GPUS --out DIR [dump_teacher_outputs.py options]" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" \
    --master_port="$PORT" \
    "$(dirname "$0")/dump_teacher_outputs.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
