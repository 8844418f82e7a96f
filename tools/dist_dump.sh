#!/usr/bin/env bash
# Teacher outputs stored (tools/dump_teacher_outputs.py) on one machine, the
# batches of each epoch split across the processes (one per GPU) by torchrun.
#   bash tools/dist_dump.sh CONFIG GPUS --out DIR [dump_teacher_outputs.py options]
# NCCL on GPU machines, gloo on CPU-only ones; PORT sets the rendezvous port.
# One machine only: the processes write into the same memory-mapped files.
set -euo pipefail
source "$(dirname "$0")/find_python.sh"
if [ $# -lt 2 ]; then
    echo "usage: bash $0 CONFIG GPUS --out DIR [dump_teacher_outputs.py options]" >&2
    exit 2
fi
if [ "${NNODES:-1}" != 1 ]; then
    echo "$0: one machine only (NNODES=${NNODES}): the processes write into" \
        "the same memory-mapped files; run a dump per machine with its own --out" >&2
    exit 2
fi
CONFIG=$1
GPUS=$2
PORT=${PORT:-29500}

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes=1 \
    --nproc_per_node="$GPUS" \
    --master_addr=127.0.0.1 \
    --master_port="$PORT" \
    "$(dirname "$0")/dump_teacher_outputs.py" \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
