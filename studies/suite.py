"""The fixed, seeded experiment suite: every cell, as data (no MPI, no clock).

A *cell* is one run: a group, a file stem, the labels the analysis groups it by, and the
configuration options it changes from the package defaults. The MPI job
(:mod:`studies.mpirun`) runs the cells in this order; the analysis
(:mod:`studies.analyse`) reads them back by the same list, so nothing is lost
between the two.

Groups (``Suite.cells``):

* ``traces``: one ``uncoded`` run per straggler scenario, whose per-task delays are replayed
  (``--stragglers trace:FILE``) by every cell of that scenario: every scheme and every
  scheduler of a comparison sees the same straggler realisation;
* ``schemes``: datasets x scenarios x schemes (IID partitions, ideal channel), one straggler
  realisation;
* ``seeded``: the MPI comparison with confidence intervals: one dataset x scenarios x every
  exact scheme (the flexible ones under each placement, ``shared`` and ``replicated:2``) x
  ``seeds`` straggler realisations, each recorded once (``trace-<scenario>-seed<k>``) and
  replayed by every scheme of that seed; realisation 0 is the ``schemes`` trace, so its shared
  cells are the ``schemes`` cells of that dataset (not run twice);
* ``schedulers``: schemes x uplink schedulers on a near/far Rayleigh channel;
* ``noniid``: label-sorted and IID partitions under persistent (bimodal) stragglers:
  ignore-stragglers against the exact schemes, two-stage with fair admission;
* the scale sweep (``Suite.sweep_ns``) runs in the simulator, not here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# The three straggler scenarios of the computing-phase benchmark (``mpicode bench schemes``).
from mpicode import registry
from mpicode.models.scenarios import SCENARIOS

SEED = 7


@dataclass(frozen=True)
class Dataset:
    """A dataset and the model trained on it, with its learning rate."""

    key: str          # label in tables
    options: dict     # dataset / model / lr / samples / features


@dataclass(frozen=True)
class Cell:
    group: str
    name: str                      # file stem: results/<name>.h5
    labels: dict                   # what the analysis groups by
    options: dict                  # configuration options that differ from the defaults
    trace: str | None = None       # stem of the trace cell it replays


# scheme variants of the comparison: label -> options. One per registered scheme (built-ins
# and plugins, from the registry), plus the paper's two-stage shape.
PAPER = {"scheme": "two-stage", "stragglers_tolerated": 1, "rho": 0.75, "stage2_tolerance": 1}
SCHEMES: dict[str, dict] = {}
for _name in registry.schemes():
    SCHEMES[_name] = {"scheme": _name, "stragglers_tolerated": 1}
    if _name == "two-stage":
        SCHEMES["two-stage (paper)"] = PAPER
EXACT_CLASSIC = ("uncoded", "frc", "cyclic")  # claim 1 compares two-stage with these
EXACT = tuple(label for label, o in SCHEMES.items() if registry.scheme(o["scheme"]).exact)
# the seeded comparison: the exact schemes; a scheme without a placement option (uncoded, frc,
# cyclic, partial-gc: the code is the placement) has a fixed layout, the others run under each
# of PLACEMENTS; hetero-gc needs every worker to read any partition: shared only
FIXED_PLACEMENT = tuple(label for label, o in SCHEMES.items() if not any(
    opt.name == "placement" for opt in registry.scheme(o["scheme"]).options)
    and label not in ("hetero-gc",))
SHARED_ONLY = ("hetero-gc",)
FIXED = "fixed"                    # the placement label of a fixed-layout scheme
PLACEMENTS = ("shared", "replicated:2")
# every registered scheduler; lyapunov last (the figures' order: baselines, then ours)
SCHEDULERS = tuple(sorted(registry.schedulers(), key=lambda n: n == "lyapunov"))
SCHEDULER_SCHEMES = ("uncoded", "cyclic", "two-stage")  # one per family: enough for claim 2

# near/far Rayleigh uplink (docs/design.md §5): mean SNR 0..20 dB across the workers, a
# bandwidth at which one gradient takes several 2 ms slots
CHANNEL = {"channel": "rayleigh", "bandwidth": 5e5, "snr_db": 10.0, "snr_spread_db": 20.0,
           "slot_ms": 2.0}

# non-IID comparison: label -> options (partitioning is added per cell)
NONIID: dict[str, dict] = {
    "uncoded": {"scheme": "uncoded"},
    "ignore-stragglers s=1": {"scheme": "ignore-stragglers", "stragglers_tolerated": 1},
    "ignore-stragglers s=2": {"scheme": "ignore-stragglers", "stragglers_tolerated": 2},
    "two-stage": {"scheme": "two-stage", "stragglers_tolerated": 1},
    "two-stage + fair admission": {"scheme": "two-stage", "stragglers_tolerated": 1,
                                   "scheduler": "lyapunov", "min_participation": 0.85,
                                   **CHANNEL},
}
NONIID_BIASED = ("ignore-stragglers s=1", "ignore-stragglers s=2")
NONIID_EXACT = ("two-stage", "two-stage + fair admission")

SWEEP_SCHEMES: dict[str, dict] = {
    "two-stage": {"scheme": "two-stage", "stragglers_tolerated": 1},
    "two-stage (paper)": PAPER,
    "cyclic": {"scheme": "cyclic", "stragglers_tolerated": 1},
    "frc": {"scheme": "frc", "stragglers_tolerated": 1},
}


@dataclass
class Suite:
    """Every size and parameter of one suite (full, or ``quick`` for tests)."""

    quick: bool = False
    workers: int = 8
    delay_unit: float = 0.02          # seconds of injected delay per fair share
    comm_delay_unit: float = 0.005    # lighter compute stragglers where the uplink matters
    iterations: int = 20              # scheme comparison (both the one-seed grid and seeded)
    seeds: int = 5                    # straggler realisations of the seeded comparison
    seeded_dataset: str = "breast_cancer"
    comm_iterations: int = 25         # scheduler comparison
    noniid_iterations: int = 40
    datasets: list[Dataset] = field(default_factory=list)
    noniid_datasets: list[str] = field(default_factory=list)
    comm_dataset: Dataset | None = None
    sweep_ns: tuple[int, ...] = (16, 32, 64, 128, 256, 512, 1000)
    sweep_iterations: int = 10
    sweep_fit_min_n: int = 64         # claim 4: slopes are fitted on N >= this
    sweep_budget_s: float = 2.0       # stop growing N for a scheme past this per iteration
    mpiexec_timeout_s: int = 1500

    @staticmethod
    def model_datasets(samples: int, features: int) -> list[Dataset]:
        """logistic on breast_cancer and on synthetic data (of this size), softmax on digits."""
        return [
            Dataset("breast_cancer", {"dataset": "breast_cancer", "model": "logistic",
                                      "lr": 0.05}),
            Dataset("synthetic", {"dataset": "synthetic", "model": "logistic", "lr": 0.5,
                                  "samples": samples, "features": features}),
            Dataset("digits", {"dataset": "digits", "model": "softmax", "lr": 0.5}),
        ]

    @classmethod
    def make(cls, quick: bool = False) -> Suite:
        if not quick:
            s = cls()
            s.datasets = cls.model_datasets(samples=4000, features=50)
            s.noniid_datasets = ["digits", "breast_cancer"]
            # 16 kB gradients: sending one takes 3-16 slots of 2 ms
            s.comm_dataset = Dataset("synthetic-2000", {
                "dataset": "synthetic", "model": "logistic", "lr": 0.5, "samples": 2000,
                "features": 2000})
            return s
        s = cls(quick=True, workers=4, delay_unit=0.002, comm_delay_unit=0.001, iterations=5,
                seeds=2, comm_iterations=4, noniid_iterations=6, sweep_ns=(8, 16, 32),
                sweep_iterations=3, sweep_fit_min_n=8, mpiexec_timeout_s=300)
        s.datasets = cls.model_datasets(samples=400, features=10)
        s.noniid_datasets = ["digits"]
        s.comm_dataset = Dataset("synthetic-200", {"dataset": "synthetic", "model": "logistic",
                                                   "lr": 0.5, "samples": 400, "features": 200})
        return s

    @property
    def ranks(self) -> int:
        return self.workers + 1

    def dataset(self, key: str) -> Dataset:
        return next(d for d in self.datasets if d.key == key)

    def scenarios(self) -> dict[str, dict]:
        return dict(SCENARIOS)

    # -- the cells ---------------------------------------------------------------------------
    def cells(self) -> list[Cell]:
        """Every MPI cell in run order: traces first (the replays read them)."""
        out: list[Cell] = []
        need = {scen: self.iterations for scen in SCENARIOS}
        need["bimodal"] = max(need["bimodal"], self.noniid_iterations)
        base = self.datasets[0].options  # the cheapest compute: delays are what we record
        for scen, params in SCENARIOS.items():
            for k in range(self.seeds):  # realisation k: the recording's seed is SEED + k
                out.append(Cell("traces", self.trace_name(scen, k), {"scenario": scen, "seed": k},
                                {**base, "scheme": "uncoded", **params, "seed": SEED + k,
                                 "delay_unit": self.delay_unit,
                                 "iterations": need[scen] if k == 0 else self.iterations}))
        out.append(Cell("traces", "trace-comm", {"scenario": "shifted-exp (light)"},
                        {**base, "scheme": "uncoded", **SCENARIOS["shifted-exp"],
                         "delay_unit": self.comm_delay_unit,
                         "iterations": self.comm_iterations}))
        for ds in self.datasets:
            for scen in SCENARIOS:
                for label, opts in SCHEMES.items():
                    out.append(Cell(
                        "schemes", f"schemes-{ds.key}-{scen}-{slug(label)}",
                        {"dataset": ds.key, "scenario": scen, "scheme": label},
                        {**ds.options, **opts, "iterations": self.iterations},
                        trace=f"trace-{scen}"))
        out += self.seeded_cells()
        for scheme in SCHEDULER_SCHEMES:
            for sched in SCHEDULERS:
                out.append(Cell(
                    "schedulers", f"schedulers-{slug(scheme)}-{sched}",
                    {"dataset": self.comm_dataset.key, "scheme": scheme, "scheduler": sched},
                    {**self.comm_dataset.options, **SCHEMES[scheme], **CHANNEL,
                     "scheduler": sched, "iterations": self.comm_iterations,
                     "log_slots": True},
                    trace="trace-comm"))
        for key in self.noniid_datasets:
            ds = self.dataset(key)
            for part in ("sorted", "iid"):
                for label, opts in NONIID.items():
                    out.append(Cell(
                        "noniid", f"noniid-{key}-{part}-{slug(label)}",
                        {"dataset": key, "partitioning": part, "variant": label},
                        {**ds.options, **opts, "partitioning": part,
                         "iterations": self.noniid_iterations,
                         "log_slots": "channel" in opts},
                        trace="trace-bimodal"))
        return out


    def cells_for(self, only: str | None) -> list[Cell]:
        """The MPI cells of ``--only``: every cell (None), or ``rivals``: those the seeded
        comparison reads (its realisations' traces, the seeded dataset's one-seed cells and the
        seeded cells), in run order."""
        cells = self.cells()
        if only is None:
            return cells
        if only != "rivals":
            raise ValueError(f"unknown --only {only!r}")
        traces = {self.trace_name(scen, k) for scen in SCENARIOS for k in range(self.seeds)}
        return [c for c in cells
                if (c.group == "traces" and c.name in traces) or c.group == "seeded"
                or (c.group == "schemes" and c.labels["dataset"] == self.seeded_dataset)]

    # -- the seeded comparison -----------------------------------------------------------------
    @staticmethod
    def trace_name(scen: str, k: int) -> str:
        return f"trace-{scen}" if k == 0 else f"trace-{scen}-seed{k}"

    @staticmethod
    def variants() -> list[tuple[str, str]]:
        """(scheme label, placement) of the seeded comparison, every exact scheme."""
        return [(label, pl) for label in EXACT
                for pl in ((FIXED,) if label in FIXED_PLACEMENT else ("shared",)
                           if label in SHARED_ONLY else PLACEMENTS)]

    def seeded_name(self, scen: str, k: int, label: str, placement: str) -> str:
        """The file stem of a seeded cell; realisation 0 under the default placement is the
        one-seed ``schemes`` cell of the seeded dataset."""
        if k == 0 and placement in (FIXED, "shared"):
            return f"schemes-{self.seeded_dataset}-{scen}-{slug(label)}"
        return f"seeded-{scen}-seed{k}-{slug(label)}" + (
            "" if placement == FIXED else f"-{placement.replace(':', '')}")

    def seeded_cells(self) -> list[Cell]:
        """The seeded cells not already in the one-seed grid."""
        ds = self.dataset(self.seeded_dataset)
        out = []
        for k in range(self.seeds):
            for scen in SCENARIOS:
                for label, pl in self.variants():
                    name = self.seeded_name(scen, k, label, pl)
                    if name.startswith("schemes-"):
                        continue
                    opts = {**ds.options, **SCHEMES[label], "iterations": self.iterations}
                    if pl != FIXED:
                        opts["placement"] = pl
                    out.append(Cell("seeded", name, {"dataset": ds.key, "scenario": scen,
                                                     "scheme": label, "placement": pl,
                                                     "seed": k},
                                    opts, trace=self.trace_name(scen, k)))
        return out


def slug(label: str) -> str:
    return (label.replace(" + ", "-").replace(" (", "-").replace(")", "").replace(" ", "-")
            .replace("=", ""))
