#!/usr/bin/env bash
# dotfind index on a Slurm cluster: a job array encodes the parts (task i runs --part i/N),
# and a merge job that starts once every task succeeded. Submit with
#
#   sbatch tools/cluster/slurm-array.sh
#
# from a directory on the shared filesystem holding corpus.jsonl, model/ (./build.sh model)
# and a dotfind binary (DOTFIND, default ./dotfind).
#SBATCH --job-name=dotfind-parts
#SBATCH --array=0-7
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --output=dotfind-part-%a.log
set -euo pipefail

PARTS=8   # N: keep equal to the array's size
DOTFIND="${DOTFIND:-./dotfind}"
common=(--model model/query --passage-model model/f32 --input corpus.jsonl)

if [ "${1:-}" = merge ]; then
  "$DOTFIND" index "${common[@]}" --out site/dotfind-index --merge parts
  exit
fi
if [ "${SLURM_ARRAY_TASK_ID:-}" = "" ]; then
  echo "submit with sbatch (it runs the array, then the merge)" >&2
  exit 2
fi
if [ "$SLURM_ARRAY_TASK_ID" = 0 ]; then
  # The first task queues the merge behind the whole array.
  sbatch --dependency="afterok:${SLURM_ARRAY_JOB_ID}" --job-name=dotfind-merge --cpus-per-task=2 --mem=8G \
    --output=dotfind-merge.log "$0" merge
fi
"$DOTFIND" index "${common[@]}" --out parts --part "${SLURM_ARRAY_TASK_ID}/${PARTS}"
