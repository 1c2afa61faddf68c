"""Write a sweep file for jobs/sweep.sbatch: one line of `mpicode train` options per cell.

    python jobs/make_sweep.py --schemes uncoded,two-stage --stragglers shifted-exp,bimodal \\
        --seeds 0-2 > jobs/sweep.txt

Cells are the product schemes x straggler models x seeds, in that order; `--extra` adds the
same options to every line. Names are checked against mpicode's option table when mpicode
is importable. Submit the result with jobs/submit_sweep.sh (it counts the lines for --array).
"""

from __future__ import annotations

import argparse
import itertools
import sys


def seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--schemes", default="uncoded,ignore-stragglers,speed-aware,frc,cyclic,"
                   "two-stage")
    p.add_argument("--stragglers", default="shifted-exp,bimodal")
    p.add_argument("--seeds", default="0-2", help="e.g. 0-4 or 1,3,5")
    p.add_argument("--extra", default="", help="options added to every line")
    a = p.parse_args(argv)
    schemes = [s for s in a.schemes.split(",") if s]
    models = [s for s in a.stragglers.split(",") if s]
    try:
        from mpicode.config import SCHEMES, STRAGGLERS
    except ImportError:
        SCHEMES = STRAGGLERS = None
    if SCHEMES is not None:
        bad = [s for s in schemes if s not in SCHEMES] + \
              [m for m in models if m not in STRAGGLERS and not m.startswith("trace:")]
        if bad:
            print(f"make_sweep: unknown scheme or straggler model: {', '.join(bad)}",
                  file=sys.stderr)
            return 2
    cells = list(itertools.product(schemes, models, seeds(a.seeds)))
    print(f"# {len(cells)} cells: schemes x stragglers x seeds; one line per array task "
          f"(0-based). Made by: python jobs/make_sweep.py --schemes {','.join(schemes)} "
          f"--stragglers {','.join(models)} --seeds {a.seeds}"
          + (f" --extra '{a.extra}'" if a.extra else ""))
    for scheme, model, seed in cells:
        print(f"--scheme {scheme} --stragglers {model} --seed {seed}"
              + (f" {a.extra}" if a.extra else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
