"""The nodes of a virtual cluster: network namespaces on one bridge, and their teardown.

Layout (``VirtualCluster(3)``, tag ``mpc<pid><letter>``, addresses in 10.213.0.0/24 inside the
cluster's own namespaces only; the root namespace gets no interface, no address, no route and
no forwarding change)::

      router namespace <tag>r  (the login node: mpiexec, sbatch, slurmctld run here)
      bridge <tag>b 10.213.0.1 = this host's name, "<tag>r"
        |               |               |
      <tag>p0         <tag>p1         <tag>p2       (router side of each veth: the link INTO
        |               |               |            the node; the bottleneck goes here)
      <tag>v0         <tag>v1         <tag>v2       (node side: the node's uplink)
      10.213.0.10     10.213.0.11     10.213.0.12
      node <tag>n0    node <tag>n1    node <tag>n2   (one namespace each)

A process runs on a node through ``DIR/node-exec NODE CMD...`` (:meth:`VirtualCluster.node_argv`):
``ip netns exec`` (the node's network and its ``/etc/netns/NODE/hosts``), ``unshare --uts``
with the node's name as hostname, and the node's own directory bind-mounted at
``DIR/local`` (a node-local disk: the same path, different files on every node). Everything
else (``/``, ``/tmp``, the venv) is shared, like a cluster's shared filesystem.

Every name starts with ``mpc`` and the owner's pid, so that :func:`cleanup_stale` removes
what a killed owner left behind (and only that). :meth:`VirtualCluster.teardown` runs on every
exit path: ``with``, :mod:`atexit`, SIGTERM/SIGHUP; it kills the processes still inside the
cluster's namespaces (by pid: only this cluster starts processes there), deletes the
namespaces (with them their veths, the bridge and every qdisc) and the hosts files.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import threading
import time
from pathlib import Path

NET = "10.213.0"           # the cluster's /24: its namespaces only
HEAD_IP = f"{NET}.1"
ETC_NETNS = Path("/etc/netns")
_OWNED = re.compile(r"^mpc(\d+)([a-z])")
_live: list[VirtualCluster] = []
_letters = iter(string.ascii_lowercase[:-1])  # 'z' is the availability probe's
_handlers: dict[int, object] = {}
_made_etc_netns = False  # /etc/netns did not exist before this process's first cluster

NODE_EXEC = r"""#!/bin/sh
# node-exec NODE COMMAND [ARG...]: run COMMAND on node NODE of the virtual cluster in {dir}:
# its network namespace (and /etc/netns/NODE/hosts), hostname NODE, {dir}/nodes/NODE mounted
# at {dir}/local (the node-local disk), and this host's cgroup tree at /sys/fs/cgroup (which
# ip netns exec's fresh /sys would hide; slurmd needs it). Three stages, one process.
dir={dir}
case "$1" in
  --in-mount-ns)  # 2: a private mount and UTS namespace: keep the cgroup tree aside
    node=$2; shift 2
    mount --rbind /sys/fs/cgroup "$dir/cgroup/$node" 2>/dev/null
    exec ip netns exec "$node" "$0" --in-netns "$node" "$@" ;;
  --in-netns)     # 3: in the node's network namespace
    node=$2; shift 2
    hostname "$node" && mount --bind "$dir/nodes/$node" "$dir/local" || exit 255
    mountpoint -q "$dir/cgroup/$node" && mount --rbind "$dir/cgroup/$node" /sys/fs/cgroup
    exec "$@" ;;
esac
node=$1
shift
case " {nodes} " in
  *" $node "*) ;;
  *) echo "node-exec: $node is not a node of this cluster ({nodes})" >&2; exit 255 ;;
esac
exec unshare --mount --uts --propagation private -- "$0" --in-mount-ns "$node" "$@"
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def in_ns(ns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``argv`` in namespace ``ns`` (network only: no hostname, no mounts)."""
    r = subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    if check and r.returncode != 0:
        raise RuntimeError(f"[{ns}] {' '.join(argv)}: {r.stderr.strip()}")
    return r


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner(name: str) -> int | None:
    """The pid that created an ``mpc<pid><letter>...`` object (None: not one of ours)."""
    m = _OWNED.match(name)
    return int(m.group(1)) if m else None


def our_namespaces() -> list[str]:
    """Every network namespace named like ours, whoever owns it."""
    r = _ip("netns", "list", check=False)
    names = [ln.split()[0] for ln in r.stdout.splitlines() if ln.strip()]
    return sorted(n for n in names if owner(n) is not None)


def ns_pids(ns: str) -> set[int]:
    r = _ip("netns", "pids", ns, check=False)
    return {int(p) for p in r.stdout.split() if p.isdigit()}


def _kill(pids: set[int], grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds, each process by its pid."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in pids:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + grace
        while any(_alive(p) for p in pids) and time.monotonic() < end:
            time.sleep(0.05)
        pids = {p for p in pids if _alive(p)}
        if not pids:
            return


def delete_namespace(ns: str) -> set[int]:
    """Kill what runs in ``ns`` (repeatedly: a dying launcher may start one more), delete it
    and its hosts file. Returns the pids it found there."""
    seen: set[int] = set()
    for _ in range(5):
        pids = ns_pids(ns)
        if not pids:
            break
        seen |= pids
        _kill(pids)
    _ip("netns", "del", ns, check=False)
    shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
    return seen


def cleanup_stale() -> list[str]:
    """Remove the ``mpc*`` namespaces, hosts files, root-namespace interfaces and work
    directories whose owner pid is dead (a cluster whose owner was SIGKILLed); a live owner's
    are left alone. Returns what it removed."""
    removed = []
    for ns in our_namespaces():
        if not _alive(owner(ns)):
            delete_namespace(ns)
            removed.append(f"netns {ns}")
    if ETC_NETNS.is_dir():
        for d in ETC_NETNS.iterdir():
            if owner(d.name) is not None and not _alive(owner(d.name)):
                shutil.rmtree(d, ignore_errors=True)
                removed.append(f"{d}")
    for dev in root_interfaces():
        if not _alive(owner(dev)):
            _ip("link", "del", dev, check=False)
            removed.append(f"link {dev}")
    for d in Path(tempfile.gettempdir()).glob("mpc*-*"):
        if d.is_dir() and owner(d.name) is not None and not _alive(owner(d.name)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed


def root_interfaces() -> list[str]:
    """Interfaces of the root namespace named like ours (there should be none)."""
    r = _ip("-o", "link", "show", check=False)
    names = [ln.split(":")[1].strip().split("@")[0] for ln in r.stdout.splitlines()
             if ln.count(":") >= 2]
    return [n for n in names if owner(n) is not None]


def unavailable() -> str | None:
    """Why a virtual cluster cannot be built here (one line), or None if it can."""
    if os.geteuid() != 0:
        return "not root (network namespaces need root)"
    for tool in ("ip", "unshare", "mount", "hostname", "tc"):
        if shutil.which(tool) is None:
            return f"no `{tool}` command"
    probe = f"mpc{os.getpid()}zprobe"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"no network namespaces here: ip netns add: {r.stderr.strip()}"
    try:
        r = _ip("-n", probe, "link", "add", f"mpc{os.getpid()}zv", "type", "veth", "peer",
                "name", f"mpc{os.getpid()}zp", check=False)
        if r.returncode != 0:
            return f"no veth pairs here: {r.stderr.strip()}"
    finally:
        delete_namespace(probe)
    return None


def _on_signal(signum, frame) -> None:
    teardown_all()
    prev = _handlers.get(signum, signal.SIG_DFL)
    if callable(prev):
        prev(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    """SIGTERM/SIGHUP tear every live cluster down, then do what they did before. Only in
    the main thread, once (atexit covers a normal exit; SIGKILL is cleanup_stale's)."""
    if _handlers or not _is_main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        _handlers[sig] = signal.getsignal(sig)
        signal.signal(sig, _on_signal)


def _is_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def teardown_all() -> None:
    for vc in list(_live):
        vc.teardown()


atexit.register(teardown_all)


class VirtualCluster:
    """``n_nodes`` nodes on one bridge (module docstring); build with :meth:`create` or
    ``with``. ``nodes[i]`` is node i's name (namespace = hostname = hostfile name)."""

    def __init__(self, n_nodes: int):
        if not 1 <= n_nodes <= 200:
            raise ValueError("1 to 200 nodes")
        letter = next(_letters, None)
        if letter is None:
            raise RuntimeError("at most 25 virtual clusters per process (their names end in "
                               "a letter after the owner's pid)")
        self.tag = f"mpc{os.getpid()}{letter}"
        self.router = f"{self.tag}r"
        self.bridge = f"{self.tag}b"
        self.nodes = [f"{self.tag}n{i}" for i in range(n_nodes)]
        self.ip = {node: f"{NET}.{10 + i}" for i, node in enumerate(self.nodes)}
        self.head_ip = HEAD_IP
        self.dir: Path | None = None
        self.pids_seen: set[int] = set()
        self.created = False

    # ---- names ---------------------------------------------------------------------------
    def veth(self, node: str) -> str:
        """The node's end of its link (its uplink: egress = node -> bridge)."""
        return f"{self.tag}v{self.nodes.index(node)}"

    def port(self, node: str) -> str:
        """The router's end of the node's link (egress = bridge -> node: into the node)."""
        return f"{self.tag}p{self.nodes.index(node)}"

    @property
    def local(self) -> Path:
        """The node-local directory's path, the same on every node (other files on each)."""
        return self.dir / "local"

    def node_dir(self, node: str) -> Path:
        """What ``node`` sees at :attr:`local` (from outside the node)."""
        return self.dir / "nodes" / node

    def node_argv(self, node: str, argv: list[str]) -> list[str]:
        """``argv`` run on ``node`` (its network, hostname and local disk)."""
        return [str(self.dir / "node-exec"), node, *map(str, argv)]

    def head_argv(self, argv: list[str]) -> list[str]:
        """``argv`` run on the login node (the router namespace, this host's hostname)."""
        return ["ip", "netns", "exec", self.router, *map(str, argv)]

    # ---- life cycle ----------------------------------------------------------------------
    def __enter__(self) -> VirtualCluster:
        return self.create()

    def __exit__(self, *exc) -> None:
        self.teardown()

    def create(self) -> VirtualCluster:
        _install_handlers()
        _live.append(self)
        self.created = True
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
            self._router()
            for node in self.nodes:
                self._node(node)
            self._hosts()
            (self.dir / "local").mkdir()
            script = self.dir / "node-exec"
            script.write_text(NODE_EXEC.format(dir=self.dir, nodes=" ".join(self.nodes)))
            script.chmod(0o755)
        except BaseException:
            self.teardown()
            raise
        return self

    def _quiet(self, ns: str) -> None:
        """No IPv6 in the cluster (its router solicitations would add to the byte counters)."""
        in_ns(ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
              "net.ipv6.conf.default.disable_ipv6=1", check=False)

    def _router(self) -> None:
        r, b = self.router, self.bridge
        _ip("netns", "add", r)
        self._quiet(r)
        _ip("-n", r, "link", "set", "lo", "up")
        _ip("-n", r, "link", "add", b, "type", "bridge")
        _ip("-n", r, "addr", "add", f"{HEAD_IP}/24", "dev", b)
        _ip("-n", r, "link", "set", b, "up")

    def _node(self, node: str) -> None:
        v, p = self.veth(node), self.port(node)
        _ip("netns", "add", node)
        self._quiet(node)
        _ip("-n", node, "link", "set", "lo", "up")
        _ip("link", "add", v, "netns", node, "type", "veth", "peer", "name", p,
            "netns", self.router)
        _ip("-n", node, "addr", "add", f"{self.ip[node]}/24", "dev", v)
        _ip("-n", node, "link", "set", v, "up")
        _ip("-n", self.router, "link", "set", p, "master", self.bridge, "up")
        self.node_dir(node).mkdir(parents=True)
        (self.dir / "cgroup" / node).mkdir(parents=True)

    def _hosts(self) -> None:
        """Every name resolves in every namespace of the cluster: the nodes, and this host's
        name as the login node (Hydra's proxies connect back to mpiexec by that name)."""
        host = socket.gethostname()
        names = sorted({host, host.split(".")[0], self.router})
        lines = ["127.0.0.1 localhost", f"{HEAD_IP} {' '.join(names)}"]
        lines += [f"{self.ip[n]} {n}" for n in self.nodes]
        global _made_etc_netns
        if not ETC_NETNS.exists():
            _made_etc_netns = True
        for ns in (self.router, *self.nodes):
            d = ETC_NETNS / ns
            d.mkdir(parents=True, exist_ok=True)
            (d / "hosts").write_text("\n".join(lines) + "\n")

    def pids(self) -> set[int]:
        """Processes running inside the cluster's namespaces now."""
        out = set()
        for ns in (*self.nodes, self.router):
            out |= ns_pids(ns)
        return out

    def teardown(self) -> None:
        """Kill what still runs inside, delete every namespace (and with them the veths,
        the bridge and the qdiscs) and hosts file, and the work directory. Idempotent."""
        if not self.created:
            return
        self.created = False
        for ns in (*self.nodes, self.router):
            self.pids_seen |= delete_namespace(ns)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _live:
            _live.remove(self)
        if not _live and _made_etc_netns:  # /etc/netns was ours: gone with the last cluster
            try:
                ETC_NETNS.rmdir()
            except OSError:
                pass  # not empty: somebody else's namespaces use it now
