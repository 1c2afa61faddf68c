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
#   MPICODE_LAUNCHER  srun (default) or mpiexec (inside the allocation)
#   MPICODE_MPIEXEC   the mpiexec of MPICODE_LAUNCHER=mpiexec (default: the venv's, from pip's
#                     MPICH, if there is one; else the first mpiexec on PATH, e.g. a module's)
#   MPICODE_SRUN_MPI  srun --mpi plugin (default pmi2, which pip's MPICH speaks; pmix for an
#                     MPI built with PMIx; set it empty to use the site's MpiDefault)
#   MPICODE_ELASTIC   1: the run survives a worker's death (train --on-failure continue, Open
#                     MPI with ULFM: make install MPI=openmpi): the launcher keeps the step
#                     alive when a task dies: Open MPI's mpiexec --with-ft ulfm (with
#                     MPICODE_LAUNCHER=mpiexec: tested, a node's workers killed); srun
#                     --no-kill --kill-on-bad-exit=0 starts the ranks but SLURM's PMIx plugin
#                     kills the step at the first death; jobs/README.md "Elastic runs"
#   MPICODE_REQUEUE   1 (default): a run stopped by SLURM's warning signal (exit code 3, a
#                     checkpoint written) requeues its job, which then resumes it; 0: do not
#   MPICODE_MAX_RESTARTS  requeue at most this many times (default 5)

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

# the mpiexec of MPICODE_LAUNCHER=mpiexec: the venv's (pip's MPICH) or the one on PATH (a
# module-provided MPI, with mpi4py built against it: make install MPI=system)
mpicode_mpiexec() {
    if [ -n "${MPICODE_MPIEXEC:-}" ]; then echo "$MPICODE_MPIEXEC"; return; fi
    local venv_mpiexec
    venv_mpiexec="$(dirname "$(command -v "$PY")")/mpiexec"
    if [ -x "$venv_mpiexec" ]; then echo "$venv_mpiexec"; else command -v mpiexec; fi
}

# launch "$@" on every task of the allocation, aborting all ranks when one fails. The launcher
# runs in the background so that this shell can forward SLURM's warning signal (#SBATCH
# --signal=B:USR1@120 signals only the batch shell) and SIGTERM to it; srun and mpiexec
# forward both to every rank, and rank 0 stops after the current iteration with a checkpoint.
mpicode_launch() {
    local cmd elastic=${MPICODE_ELASTIC:-0}
    if [ "${MPICODE_LAUNCHER:-srun}" = mpiexec ]; then
        local ft=()
        if [ "$elastic" = 1 ]; then ft=(--with-ft ulfm); fi
        cmd=("$(mpicode_mpiexec)" "${ft[@]}" -n "${SLURM_NTASKS:?}" "$@")
    else
        local mpi=() kill=(--kill-on-bad-exit=1)
        if [ -n "${MPICODE_SRUN_MPI-pmi2}" ]; then mpi=(--mpi="${MPICODE_SRUN_MPI-pmi2}"); fi
        # a task that dies must not end the step (--kill-on-bad-exit=0), nor a lost node the
        # job (--no-kill); ranks srun starts get Open MPI's ULFM switched on by the variable
        # that mpiexec --with-ft ulfm would set (without it train refuses --on-failure continue).
        # But SLURM's PMIx plugin SIGKILLs the whole step when a task dies (its error handler
        # calls slurm_kill_job_step), whatever these flags say: docs/cluster.md "Elastic runs"
        if [ "$elastic" = 1 ]; then
            kill=(--no-kill --kill-on-bad-exit=0)
            export OMPI_MCA_mpi_ft_enable=${OMPI_MCA_mpi_ft_enable:-1}
            echo "mpicode job: warning: under srun a task's death ends the step (SLURM's PMIx" \
                 "plugin kills it); MPICODE_LAUNCHER=mpiexec is the elastic launcher" >&2
        fi
        cmd=(srun "${kill[@]}" "${mpi[@]}" "$@")
    fi
    "${cmd[@]}" &
    local pid=$! rc=0
    # shellcheck disable=SC2064
    trap "echo 'mpicode job: SIGUSR1 (time limit near): stopping the run with a checkpoint' >&2;
          MPICODE_TIME_LIMIT=1; kill -USR1 $pid 2>/dev/null || true" USR1
    # shellcheck disable=SC2064
    trap "kill -TERM $pid 2>/dev/null || true" TERM
    while :; do  # a trapped signal ends wait early: wait again until the launcher exits
        rc=0
        wait "$pid" || rc=$?
        kill -0 "$pid" 2>/dev/null || break
    done
    trap - USR1 TERM
    return "$rc"
}

# MPICODE_RUN_ARGS: --out OUT for a new run; --resume OUT when OUT or OUT.part exists (a
# requeued job, or a resubmitted one, continues its run instead of stopping on "output exists")
mpicode_run_args() {
    local out=${1:?}
    if [ -e "$out" ] || [ -e "$out.part" ]; then
        echo "mpicode job: $out exists (restart ${SLURM_RESTART_COUNT:-0}): resuming it"
        MPICODE_RUN_ARGS=(--resume "$out")
    else
        MPICODE_RUN_ARGS=(--out "$out")
    fi
    MPICODE_RUN_OUT=$out
}

# the run file says the run stopped with a checkpoint (status "interrupted")
mpicode_run_interrupted() {
    local f
    for f in "${MPICODE_RUN_OUT:-}" "${MPICODE_RUN_OUT:-}.part"; do
        [ -f "$f" ] || continue
        "$PY" -c 'import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    sys.exit(0 if f.attrs.get("status") == "interrupted" else 1)' "$f" 2>/dev/null && return 0
    done
    return 1
}

# after a run: exit code 3 after SLURM's warning signal (SIGUSR1 before the time limit) means
# interrupted with a checkpoint: requeue this job (it resumes) unless MPICODE_REQUEUE=0 or the
# restarts are used up. A run stopped otherwise (scancel's SIGTERM) is not requeued. Returns
# the run's exit code otherwise. srun --kill-on-bad-exit may kill a worker that had not yet
# exited after rank 0's exit code 3, so srun's own code can then be 143: the run file decides.
mpicode_requeue_or() {
    local rc=$1 restarts=${SLURM_RESTART_COUNT:-0}
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ] && [ "${MPICODE_TIME_LIMIT:-0}" = 1 ] \
            && mpicode_run_interrupted; then
        echo "mpicode job: the launcher exited $rc after the run stopped with a checkpoint"
        rc=3
    fi
    if [ "$rc" -eq 3 ] && [ "${MPICODE_TIME_LIMIT:-0}" = 1 ] && [ "${MPICODE_REQUEUE:-1}" = 1 ] \
            && [ -n "${SLURM_JOB_ID:-}" ] \
            && [ "$restarts" -lt "${MPICODE_MAX_RESTARTS:-5}" ]; then
        echo "mpicode job: interrupted with a checkpoint: requeueing job $SLURM_JOB_ID" \
             "(restart $((restarts + 1)) of at most ${MPICODE_MAX_RESTARTS:-5})"
        scontrol requeue "$SLURM_JOB_ID"
        exit 0
    fi
    return "$rc"
}

# compile every numba kernel once into the cache, before the ranks start (they would
# otherwise all compile at once, and the first run's timings would include it)
mpicode_warmup() {
    "$PY" -m mpicode warmup
}

echo "mpicode job ${SLURM_JOB_ID:-?} on $(hostname -s): ${SLURM_NTASKS:-?} tasks, python $("$PY" -c 'import sys; print(sys.executable)')"
