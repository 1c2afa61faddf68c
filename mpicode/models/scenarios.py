"""The three straggler scenarios the benchmarks (``mpicode bench schemes``) and the research
suite's MPI comparison run every scheme under (docs/design.md §5), as straggler options::

    from mpicode.models.scenarios import SCENARIOS
    SCENARIOS["bimodal"]    # {"stragglers": "bimodal", "slow_fraction": 0.25, "slowdown": 5.0}
"""

SCENARIOS = {
    # i.i.d. per task: T = unit * (1 * load + Exp(mean = load))
    "shifted-exp": {"stragglers": "shifted-exp", "shift": 1.0, "mu": 1.0},
    # 25% of the workers persistently 5x slower
    "bimodal": {"stragglers": "bimodal", "slow_fraction": 0.25, "slowdown": 5.0},
    # one Exp(mean = 2 units) per worker and iteration, on its first task
    "exp-per-iteration": {"stragglers": "exp-per-iteration", "delay_mean": 2.0},
}
