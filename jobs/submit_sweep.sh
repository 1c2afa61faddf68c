#!/bin/bash
# Submit a sweep as a job array and chain its report job (runs only if every cell succeeded).
#
#   jobs/submit_sweep.sh [SWEEP.txt] [CONFIG.toml] [sbatch options for the array, e.g. --ntasks=5]
#
# Paths are relative to the repository (this script's parent directory); job logs go to the
# current directory. Prints the two job ids. The same by hand, from the repository:
#   n=$(grep -cEv '^[[:space:]]*(#|$)' jobs/sweep.txt)
#   A=$(sbatch --parsable --array=0-$((n - 1)) jobs/sweep.sbatch jobs/sweep.txt)
#   sbatch --dependency=afterok:$A jobs/report.sbatch runs/sweep_$A
# (afterok on an array job id waits for every task of the array.) Add --array=0-35%4 to run
# at most 4 cells at a time.
set -euo pipefail
jobs=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export MPICODE_HOME=${MPICODE_HOME:-$(dirname "$jobs")}
runs=${MPICODE_RUNS:-runs}
sweep=${1:-jobs/sweep.txt}
config=${2:-${MPICODE_CONFIG:-jobs/configs/bimodal-compare.toml}}
shift $(( $# < 2 ? $# : 2 ))
n=$(cd "$MPICODE_HOME" && grep -cEv '^[[:space:]]*(#|$)' "$sweep" || true)
if [ "${n:-0}" -lt 1 ]; then
    echo "submit_sweep: $sweep has no cells" >&2
    exit 2
fi
array=$(sbatch --parsable --array=0-$((n - 1)) "$@" "$jobs/sweep.sbatch" "$sweep" "$config")
array=${array%%;*}
report=$(sbatch --parsable --dependency=afterok:"$array" "$jobs/report.sbatch" \
         "$runs/sweep_$array")
report=${report%%;*}
echo "sweep array job $array ($n cells) -> $runs/sweep_$array/"
echo "report job $report (after every cell succeeded) -> $runs/sweep_$array/report.txt"
