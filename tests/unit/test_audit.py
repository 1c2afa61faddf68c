"""Bad input, end to end: one line on stderr, exit code 2 on every rank, within 30 s, no
traceback, and no file changed.

Every ``train`` case runs under ``mpiexec`` (3 ranks unless it needs another size) through a
small wrapper that calls :func:`mpicode.cli.main` exactly as ``python -m mpi4py -m mpicode``
does, and records each rank's own exit code in ``code.<rank>``: ``mpiexec`` only returns the
largest, which would hide a rank that exited 0 (or hung until the launcher killed it).
``test_real_entry_point`` checks a few cases through the real ``-m mpicode`` launch too.
``simulate`` cases run serially and must behave the same.

The requirement (issue): invalid numbers and ranges, s >= N, N not a multiple of s+1 for frc,
rho or beta out of range, unknown names, missing/truncated/corrupt datasets, NaN or inf,
wrong shapes, labels that do not fit the model, TOML syntax errors and unknown keys, output
exists without --force, too few ranks, a trace recorded with a different N.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import ROOT

# ---- safety audit -------------------------------------------------------------------------

PKG = ROOT / "mpicode"
FORBIDDEN = [
    (r"\b(import|from)\s+(c?pickle|_pickle|dill|cloudpickle|joblib|marshal|shelve)\b",
     "pickle-like module"),
    (r"\b(pickle|marshal|joblib|torch)\.loads?\(", "pickle-like load"),
    (r"(?<![\w.])(eval|exec|compile|__import__)\(", "eval/exec"),
    (r"\bliteral_eval\(", "literal_eval"),
    (r"\byaml\.(load|unsafe_load|full_load)\(", "yaml.load"),
    (r"allow_pickle\s*=\s*True", "allow_pickle=True"),
]
# mpi4py's lowercase calls pickle their payload. Allowed: mpi/launch.py's start-up broadcasts
# (rank 0's verdict on the input, a str or None; a resumed run's stored configuration, a
# small JSON-born dict), and mpi.comm.SendPool.isend(comm, buf, dest, tag), our own wrapper
# of the buffer call comm.Isend (checked below), recognised by its first argument: mpi4py's
# Comm.isend(obj, dest, tag) is never given a communicator.
LOWERCASE_MPI = re.compile(r"\.(send|recv|isend|irecv|issend|ssend|bsend|sendrecv|mrecv|"
                           r"imrecv|bcast|ibcast|gather|igather|scatter|iscatter|allgather|"
                           r"alltoall|reduce|allreduce|scan|exscan|probe_recv)\s*\(")
ALLOWED_LOWERCASE: set[tuple[str, str]] = set()  # none left: start-up is buffers (startup.py)
SENDPOOL_CALL = re.compile(r"\.isend\(\s*(self\.)?comm\s*,")


def _code_lines(path: Path) -> dict[int, str]:
    """Line number -> the line as written, with comments and string literals blanked."""
    import tokenize
    lines = path.read_text().splitlines()
    with open(path, "rb") as f:
        for tok in tokenize.tokenize(f.readline):
            if tok.type not in (tokenize.COMMENT, tokenize.STRING):
                continue
            (r0, c0), (r1, c1) = tok.start, tok.end
            for r in range(r0, r1 + 1):
                a = c0 if r == r0 else 0
                b = c1 if r == r1 else len(lines[r - 1])
                lines[r - 1] = lines[r - 1][:a] + " " * (b - a) + lines[r - 1][b:]
    return {i: ln.strip() for i, ln in enumerate(lines, 1) if ln.strip()}


def test_no_pickle_eval_exec():
    """No pickle, eval or exec wherever files or messages are read; np.load only with
    allow_pickle=False; no pickle-based mpi4py call (start-up sends bytes: mpi/startup.py)."""
    bad = []
    # the research suite's MPI jobs too (studies/, beside the package)
    for p in sorted([*PKG.rglob("*.py"), *(ROOT / "studies").rglob("*.py")]):
        rel = p.relative_to(ROOT)
        for i, code in _code_lines(p).items():
            for pat, what in FORBIDDEN:
                if re.search(pat, code):
                    bad.append(f"{rel}:{i}: {what}: {code}")
            if re.search(r"\bnp\.load\(", code) and "allow_pickle=False" not in code:
                bad.append(f"{rel}:{i}: np.load without allow_pickle=False: {code}")
            m = LOWERCASE_MPI.search(code)
            if m and re.search(r"\b(np|numpy|functools)(\.\w+)*$", code[:m.start()]):
                continue  # numpy ufunc / functools reduce: not MPI
            if m and SENDPOOL_CALL.search(code):
                continue  # SendPool.isend: a buffer send
            if m and not any(p.name == f and a in code for f, a in ALLOWED_LOWERCASE):
                bad.append(f"{rel}:{i}: pickle-based mpi4py call: {code}")
    assert not bad, "\n".join(bad)
    # the allowed wrapper really is the buffer call
    src = (PKG / "mpi" / "comm.py").read_text()
    body = src[src.index("def isend(self"):]
    assert "comm.Isend(buf" in body[:body.index("\n    def ")]


def test_audit_catches_what_it_should(tmp_path):
    """The scanner is not vacuous: planted violations are found."""
    p = tmp_path / "bad.py"
    p.write_text("import pickle\nx = eval('1')  # eval( in a comment is fine\n"
                 "w = comm.bcast(w, root=0)\ny = np.load(f)\ns = 'exec(1)'\n")
    lines = _code_lines(p)
    hits = {i for i, c in lines.items() for pat, _ in FORBIDDEN if re.search(pat, c)}
    assert hits == {1, 2}
    assert LOWERCASE_MPI.search(lines[3]) and "allow_pickle" not in lines[4]
    assert not SENDPOOL_CALL.search("comm.isend(w, dest=1)")
    assert SENDPOOL_CALL.search("self.sends.isend(self.comm, out, 0, TAG)")
    assert 5 not in lines or not any(re.search(pat, lines[5]) for pat, _ in FORBIDDEN)


def test_only_rank_0_writes_files():
    """The MPI package opens no file themselves: the run log (h5log.RunLog) is
    the only writer of a run, created by rank 0 after the workers' branch has returned."""
    writes = re.compile(r"h5py\.File\(|\bopen\(|\.write_(text|bytes)\(|np\.save|savefig\(|"
                        r"os\.(replace|rename|remove|unlink)\(|mkdir\(|\.to_csv\(")
    found = [f"{p.name}:{i}" for p in sorted((PKG / "mpi").glob("*.py"))
             for i, ln in _code_lines(p).items() if writes.search(ln)]
    assert not found, found
    src = (PKG / "mpi" / "launch.py").read_text()
    run = src[src.index("def run(cfg"):]
    assert run.index("if rank != 0:") < run.index("Session(")


