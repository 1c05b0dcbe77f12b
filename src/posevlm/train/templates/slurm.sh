#!/bin/bash
# posevlm train on one SLURM node, one process per GPU (torchrun). Print this template with
# `posevlm train --print-slurm > train.slurm`, adjust the #SBATCH lines, then:
#     sbatch train.slurm configs/train/qwen25vl_3b_sqa3d.yaml [KEY=VALUE ...]
# Resubmitting the same command after a preemption or a time limit resumes from the newest checkpoint
# (run.resume=auto). Add run.deepspeed=zero2 (or zero3, zero3_offload) for DeepSpeed.
#SBATCH --job-name=posevlm-train
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:2
#SBATCH --cpus-per-task=8
#SBATCH --mem=80G
#SBATCH --time=80:00:00
#SBATCH --output=%x-%j.out
set -euo pipefail

CONFIG=${1:?usage: sbatch train.slurm CONFIG.yaml [KEY=VALUE ...]}
shift
GPUS=${SLURM_GPUS_ON_NODE:-$(nvidia-smi -L | wc -l)}
MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
MASTER_PORT=$((20001 + RANDOM % 9999))
export NCCL_P2P_DISABLE=${NCCL_P2P_DISABLE:-1}   # the research cluster needed both; unset them where P2P / IB work
export NCCL_IB_DISABLE=${NCCL_IB_DISABLE:-1}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$((SLURM_CPUS_PER_TASK / GPUS))}

srun torchrun --nnodes 1 --nproc_per_node "$GPUS" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    -m posevlm train "$CONFIG" "$@"
