"""The virtual cluster itself (mpicode.vcluster): nodes with their own name, address, hosts
file and local disk; the ssh stand-in the MPI launchers call; rate limits; and a teardown that
leaves no namespace, interface, qdisc, hosts file, directory or process behind, also after an
owner that was killed (the next one removes its leftovers, and only those).

    python -m pytest -q tests/cluster/test_vcluster.py       # as root
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mpicode.vcluster import VirtualCluster, cleanup_stale, links
from mpicode.vcluster.launcher import ssh_shim
from mpicode.vcluster.netns import ETC_NETNS, our_namespaces, root_interfaces

pytestmark = pytest.mark.timeout(300)


def _sh(vc, node, script):
    r = subprocess.run(vc.node_argv(node, ["sh", "-c", script]), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_a_node_has_its_name_address_hosts_and_local_disk(vcluster):
    vc = vcluster
    n1, n2 = vc.nodes[1], vc.nodes[2]
    out = _sh(vc, n1, f"hostname; getent hosts {n2} $(cat /proc/sys/kernel/hostname) "
                      f"{os.uname().nodename}; ip -o -4 addr show; "
                      f"echo one > {vc.local}/mine; ls {vc.local}").splitlines()
    assert out[0] == n1
    assert f"{vc.ip[n2]}" in out[1] and n2 in out[1]
    assert vc.ip[n1] in out[2] and n1 in out[2]            # its own name: its own address
    assert vc.head_ip in out[3]                            # this host's name: the login node
    addrs = " ".join(out[4:-1])
    assert f"{vc.ip[n1]}/" in addrs and f"{vc.head_ip}/" not in addrs  # its own link only
    assert out[-1] == "mine"
    # the local disk is per node: n2 sees its own (empty) one, the host sees neither at vc.local
    assert (vc.node_dir(n1) / "mine").read_text() == "one\n"
    assert "mine" not in _sh(vc, n2, f"ls -A {vc.local}").split()
    assert not (vc.local / "mine").exists()
    (vc.node_dir(n1) / "mine").unlink()


def test_ssh_stand_in_drops_options_and_runs_the_command_on_the_node(vcluster):
    vc = vcluster
    shim = str(ssh_shim(vc))
    r = subprocess.run([shim, "-x", "-o", "StrictHostKeyChecking=no", "-p", "22",
                        f"user@{vc.nodes[2]}", "echo", "$(hostname)", "'a b'"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == [vc.nodes[2], "a", "b"], r
    r = subprocess.run([shim, "not-a-node", "true"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 255 and "not a node of this cluster" in r.stderr


def test_nodes_talk_over_their_links_and_the_counters_see_it(vcluster):
    vc = vcluster
    n0, n1 = vc.nodes[0], vc.nodes[1]
    before = links.counters(vc, n1)["tx_bytes"]
    server = subprocess.Popen(vc.node_argv(n0, [sys.executable, "-c", (
        "import socket;s=socket.socket();s.bind(('',6001));s.listen(1);c,_=s.accept();n=0\n"
        "while (d:=c.recv(65536)): n+=len(d)\nprint(n)")]), stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        subprocess.run(vc.node_argv(n1, [sys.executable, "-c", (
            f"import socket;c=socket.create_connection(('{n0}',6001));"
            "c.sendall(b'x'*300000);c.close()")]), check=True, timeout=60)
        assert server.communicate(timeout=60)[0].strip() == "300000"
    finally:
        server.kill()
        server.wait()
    assert links.counters(vc, n1)["tx_bytes"] - before >= 300000


def test_rates_are_set_changed_live_and_cleared(vcluster):
    vc = vcluster
    n0, n3 = vc.nodes[0], vc.nodes[3]
    try:
        links.set_uplink(vc, n3, 1e6)
        links.set_bottleneck(vc, n0, 2e6)
        up = [q for q in links.qdiscs(vc, n3) if q["side"] == "uplink"][0]
        assert up["kind"] == "tbf" and up["options"]["rate"] == 1_000_000  # bytes/s
        links.set_uplink(vc, n3, 1e5, live=True)
        up2 = [q for q in links.qdiscs(vc, n3) if q["side"] == "uplink"][0]
        assert up2["handle"] == up["handle"] and up2["options"]["rate"] == 100_000
        into = [q for q in links.qdiscs(vc, n0) if q["side"] == "into"][0]
        assert into["kind"] == "htb"
    finally:
        links.clear(vc, n3)
        links.clear(vc, n0)
    assert {q["kind"] for q in links.qdiscs(vc, n3) + links.qdiscs(vc, n0)} == {"noqueue"}


def _root_state():
    """What the root namespace has that a cluster must not change."""
    def run(*a):
        return subprocess.run(a, capture_output=True, text=True, timeout=30).stdout
    return {"links": run("ip", "-o", "link", "show"), "addrs": run("ip", "-o", "addr", "show"),
            "routes": run("ip", "route", "show"), "qdiscs": run("tc", "qdisc", "show"),
            "forward": Path("/proc/sys/net/ipv4/ip_forward").read_text(),
            "netns": sorted(our_namespaces()), "etc_netns": ETC_NETNS.exists()}


def test_teardown_leaves_nothing_behind(vcluster):
    """A second cluster (the session's stays up), shaped, with processes on its nodes and an
    MPI job running: after teardown no namespace, hosts file, interface, qdisc, directory or
    process of it is left, and the root namespace is as it was."""
    before = _root_state()
    vc = VirtualCluster(2).create()
    tag = vc.tag
    try:
        links.set_uplink(vc, vc.nodes[1], 1e6)
        links.set_bottleneck(vc, vc.nodes[0], 1e6)
        sleeper = subprocess.Popen(vc.node_argv(vc.nodes[1], ["sleep", "300"]))
        from mpicode.vcluster import mpi_env, mpiexec_argv
        job = subprocess.Popen(mpiexec_argv(vc, [(vc.nodes[0], 1), (vc.nodes[1], 1)]) + [
                               sys.executable, "-c",
                               "import time; from mpi4py import MPI; time.sleep(300)"],
                               env=dict(mpi_env(), MPIEXEC_TIMEOUT="300"),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert _wait(lambda: len(vc.pids()) >= 4, 60), vc.pids()  # sleep, proxies, ranks
        running = vc.pids() | {sleeper.pid}
    finally:
        vc.teardown()
    for p in (sleeper, job):
        p.wait(timeout=30)  # reaped: the kill reached them
    assert vc.pids_seen  # it found processes inside, and ended them (below)
    for pid in running:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), pid
    assert not [n for n in our_namespaces() if n.startswith(tag)]
    assert not [d for d in ETC_NETNS.glob(f"{tag}*")] if ETC_NETNS.is_dir() else True
    assert not [d for d in root_interfaces() if d.startswith(tag)]
    assert not vc.dir.exists()
    assert _root_state() == before


def _wait(ok, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ok():
            return True
        time.sleep(0.1)
    return ok()


def _zombie(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def test_leftovers_of_a_killed_owner_are_removed_and_a_live_owners_kept(tmp_path):
    """A cluster whose owner died by SIGKILL (no teardown ran): the next session's
    cleanup_stale removes it, namespaces, hosts files, directory and the processes inside;
    a cluster whose owner lives is left alone."""
    code = ("import sys, subprocess, time\n"
            "from mpicode.vcluster import VirtualCluster\n"
            "vc = VirtualCluster(2).create()\n"
            "subprocess.Popen(vc.node_argv(vc.nodes[1], ['sleep', '300']))\n"
            "print(vc.tag, vc.dir, flush=True)\n"
            "time.sleep(300)\n")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    tag, d = owner.stdout.readline().split()
    from mpicode.vcluster.netns import ns_pids
    inside = _wait(lambda: ns_pids(f"{tag}n1"), 30) and ns_pids(f"{tag}n1")
    live = VirtualCluster(1).create()  # ours: alive
    try:
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(timeout=30)
        assert [n for n in our_namespaces() if n.startswith(tag)]  # left behind
        removed = cleanup_stale()
        assert any(tag in r for r in removed)
        assert not [n for n in our_namespaces() if n.startswith(tag)]
        assert not Path(d).exists() and not (ETC_NETNS / f"{tag}n1").exists()
        assert inside and all(not Path(f"/proc/{p}").exists() or _zombie(p) for p in inside)
        assert set(live.nodes) <= set(our_namespaces())  # a live owner's: untouched
    finally:
        live.teardown()
        if owner.poll() is None:
            owner.kill()
