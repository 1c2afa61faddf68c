"""Rank 0's reference cost profile: the coordinator cost model's defaults (§2.6).

Reference machine: the project's 2-core AMD EPYC VM (Python 3.11, numpy 2, MPICH 5.0.2 from
PyPI), quiet (load average < 1), 2026-12-07. The table is the in-process thread CPU of each
action, fitted by ``python -m mpicode.analysis.rank0_fit`` (FIT_N = 16..1024, every
registered scheme and scheduler; predicted / measured CPU 0.59-1.01 per call, the low ones
for actions a few microseconds long); the three constants come from ``mpicode calibrate``
under ``mpiexec -n 9`` (-n 3, 5, 9 gave factors 2.17, 1.95, 2.10: rank 0's wall time per
action under MPI is about twice the serial CPU estimate, the interpreter's and the MPI
progress engine's share). Regenerate all of it the same way on a quiet machine. Seconds.
"""

FACTOR = 2.095
SEND_S = 1.30e-06
RECV_S = 9.82e-07
TABLE = {
    'cyclic': {
        'begin': [0.0, 4.727e-06, 0.0, 0.0, 7.357e-07, 0.0],
        'decode': [6.431e-05, 2.806e-05, 0.0, 0.0, 0.0, 0.0],
        'end': [0.0, 3.237e-06, 2.056e-07, 0.0, 0.0, 0.0],
        'result': [2.183e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'default': {
        'begin': [0.0001436, 4.727e-06, 7.409e-08, 4.908e-06, 3.583e-06, 0.0],
        'decode': [6.431e-05, 2.806e-05, 5.336e-07, 0.0, 0.0, 2.603e-07],
        'end': [9.886e-05, 3.237e-06, 1.946e-06, 4.019e-07, 0.0, 0.0],
        'result': [9.828e-06, 0.0, 2.385e-09, 1.462e-06, 3.167e-05, 0.0],
        'slot': [7.021e-05, 9.597e-06, 3.101e-07, 0.0, 0.0, 9.541e-06],
        'tick': [1.176e-05, 0.0, 8.469e-07, 0.0, 0.0, 0.0],
    },
    'dropcompute': {
        'begin': [5.179e-06, 0.0, 0.0, 0.0, 2.727e-07, 0.0],
        'decode': [3.372e-06, 0.0, 1.399e-07, 0.0, 0.0, 1.399e-07],
        'end': [1.552e-05, 0.0, 7.185e-07, 0.0, 0.0, 0.0],
        'result': [2.225e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'engine': {
        'log': [2.995e-05, 0.0, 0.0, 1.779e-07, 0.0, 0.0],
        'rows': [9.349e-05, 3.81e-06, 3.032e-06, 2.845e-06, 0.0, 0.0],
    },
    'fifo': {
        'slot': [1.824e-05, 0.0, 7.063e-08, 0.0, 0.0, 6.575e-06],
    },
    'frc': {
        'begin': [4.864e-06, 6.52e-07, 1.515e-08, 1.515e-08, 1.212e-07, 0.0],
        'decode': [3.861e-06, 0.0, 5.336e-07, 0.0, 0.0, 0.0],
        'end': [0.0, 2.476e-06, 1.489e-07, 1.489e-07, 0.0, 0.0],
        'result': [2.476e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'hetero-gc': {
        'begin': [0.0001436, 4.796e-08, 6.247e-08, 6.247e-08, 4.998e-07, 0.0],
        'decode': [3.52e-06, 0.0, 3.856e-08, 0.0, 0.0, 0.0],
        'end': [1.608e-05, 0.0, 1.803e-07, 1.803e-07, 0.0, 0.0],
        'result': [2.497e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'ignore-stragglers': {
        'begin': [7.431e-06, 0.0, 7.409e-08, 7.409e-08, 2.963e-07, 0.0],
        'decode': [0.0, 1.299e-06, 0.0, 0.0, 0.0, 2.177e-07],
        'end': [0.0, 2.271e-06, 1.538e-07, 1.538e-07, 0.0, 0.0],
        'result': [2.136e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'lyapunov': {
        'slot': [7.021e-05, 0.0, 3.101e-07, 0.0, 0.0, 9.541e-06],
    },
    'max-weight': {
        'slot': [2.326e-05, 0.0, 6.883e-08, 0.0, 0.0, 7.507e-06],
    },
    'partial-gc': {
        'begin': [8.528e-06, 0.0, 0.0, 0.0, 3.312e-07, 0.0],
        'decode': [5.302e-07, 0.0, 3.864e-07, 0.0, 0.0, 0.0],
        'end': [0.0, 3.101e-06, 1.764e-07, 3.529e-07, 0.0, 0.0],
        'result': [2.446e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'proportional-fair': {
        'slot': [6.037e-07, 9.597e-06, 0.0, 0.0, 0.0, 6.587e-06],
    },
    'round-robin': {
        'slot': [1.436e-05, 0.0, 2.878e-07, 0.0, 0.0, 6.984e-06],
    },
    'self-scheduling': {
        'begin': [4.106e-05, 0.0, 0.0, 0.0, 3.583e-06, 0.0],
        'decode': [1.329e-06, 0.0, 0.0, 0.0, 0.0, 1.165e-07],
        'end': [1.199e-05, 0.0, 0.0, 4.019e-07, 0.0, 0.0],
        'result': [9.828e-06, 0.0, 2.385e-09, 1.462e-06, 1.988e-06, 0.0],
        'tick': [1.176e-05, 0.0, 8.629e-09, 0.0, 0.0, 0.0],
    },
    'speed-aware': {
        'begin': [0.0001262, 0.0, 0.0, 0.0, 4.677e-07, 0.0],
        'decode': [3.725e-06, 0.0, 6.067e-08, 0.0, 0.0, 6.067e-08],
        'end': [8.133e-06, 1.021e-07, 3.412e-07, 0.0, 0.0, 0.0],
        'result': [2.121e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
    'two-stage': {
        'begin': [9.822e-05, 0.0, 0.0, 4.908e-06, 0.0, 0.0],
        'decode': [7.528e-07, 0.0, 0.0, 0.0, 0.0, 2.603e-07],
        'end': [9.886e-05, 0.0, 1.946e-06, 0.0, 0.0, 0.0],
        'result': [9.269e-06, 0.0, 0.0, 0.0, 3.167e-05, 0.0],
        'tick': [0.0, 0.0, 8.469e-07, 0.0, 0.0, 0.0],
    },
    'uncoded': {
        'begin': [0.0, 3.196e-06, 0.0, 0.0, 3.429e-07, 0.0],
        'decode': [4.168e-06, 0.0, 8.244e-08, 0.0, 0.0, 8.244e-08],
        'end': [5.161e-06, 1.405e-06, 3.408e-07, 0.0, 0.0, 0.0],
        'result': [2.283e-06, 0.0, 0.0, 0.0, 0.0, 0.0],
    },
}

