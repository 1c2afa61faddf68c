# Common set-up of the mpicode batch jobs; sourced by jobs/*.sbatch (not run on its own).
#
# Relative paths (configs, sweep files, outputs) are relative to MPICODE_HOME.
# Environment it reads (all optional):
#   MPICODE_HOME      repository to run in (default: the directory sbatch was called from)
#   MPICODE_PYTHON    python with mpicode installed (default: python of the venv below)
#   MPICODE_VENV      venv to activate when MPICODE_PYTHON is unset (default: .venv)
#   MPICODE_MODULES   site modules to load first, e.g. "python/3.11" (never an MPI module
#                     with pip's MPICH: the two would clash)
#   MPICODE_RUNS      directory of the run files (default: runs, inside MPICODE_HOME)
#   NUMBA_CACHE_DIR   compiled-kernel cache; keep it on a filesystem every node sees
#                     (default: $MPICODE_HOME/.numba_cache)
#   MPICODE_LAUNCHER  srun (default) or mpiexec (MPICH's hydra inside the allocation)
#   MPICODE_SRUN_MPI  srun --mpi plugin (default pmi2, which pip's MPICH speaks; pmix for an
#                     MPI built with PMIx; set it empty to use the site's MpiDefault)

set -euo pipefail
MPICODE_HOME=${MPICODE_HOME:-${SLURM_SUBMIT_DIR:-$PWD}}
cd "$MPICODE_HOME"

if [ -n "${MPICODE_MODULES:-}" ] && command -v module >/dev/null 2>&1; then
    # shellcheck disable=SC2086
    module load $MPICODE_MODULES
fi
if [ -z "${MPICODE_PYTHON:-}" ]; then
    venv=${MPICODE_VENV:-.venv}
    if [ -f "$venv/bin/activate" ]; then
        # shellcheck disable=SC1091
        . "$venv/bin/activate"
    fi
    MPICODE_PYTHON=python
fi
PY=$MPICODE_PYTHON

# one thread per rank: the ranks are the parallelism, and a BLAS or numba thread pool per
# rank would oversubscribe the cores and manufacture stragglers
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1
export NUMBA_CACHE_DIR=${NUMBA_CACHE_DIR:-$MPICODE_HOME/.numba_cache}
MPICODE_RUNS=${MPICODE_RUNS:-runs}
mkdir -p "$NUMBA_CACHE_DIR" "$MPICODE_RUNS"

# launch "$@" on every task of the allocation, aborting all ranks when one fails
mpicode_launch() {
    if [ "${MPICODE_LAUNCHER:-srun}" = mpiexec ]; then
        "$(dirname "$(command -v "$PY")")/mpiexec" -n "${SLURM_NTASKS:?}" "$@"
    else
        local mpi=()
        if [ -n "${MPICODE_SRUN_MPI-pmi2}" ]; then mpi=(--mpi="${MPICODE_SRUN_MPI-pmi2}"); fi
        srun --kill-on-bad-exit=1 "${mpi[@]}" "$@"
    fi
}

# compile every numba kernel once into the cache, before the ranks start (they would
# otherwise all compile at once, and the first run's timings would include it)
mpicode_warmup() {
    "$PY" -m mpicode warmup
}

echo "mpicode job ${SLURM_JOB_ID:-?} on $(hostname -s): $SLURM_NTASKS tasks, python $("$PY" -c 'import sys; print(sys.executable)')"
