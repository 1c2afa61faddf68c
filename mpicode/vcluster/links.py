"""Real, rate-limited links in a virtual cluster: ``tc`` on the cluster's own veths.

* a node's **uplink** (node -> bridge) is a ``tbf`` on the node's end of its veth;
* a **shared bottleneck into a node** (every other node -> that node, e.g. the workers' results
  into rank 0's node) is an ``htb`` class on the router's end of that node's veth.

Rates are bytes per second (as ``--bandwidth``), converted to bits for ``tc``. What this kernel
offers is ``tbf``, ``htb`` and the FIFOs; ``netem``, ``fq_codel``, ``prio`` and ``sfq`` are
not built in, so a link here has a real rate and a real queue, but no emulated latency and no
emulated loss (only the drops of a full queue). ``set_uplink(..., live=True)`` changes the
rate of a link in use (``tc qdisc change``: its queue is kept), which is how a link is
throttled mid-run.

The byte counters (:func:`counters`) are the veths' own: what really crossed a node's link,
whichever MPI transport sent it.
"""

from __future__ import annotations

import json

from mpicode.vcluster.netns import VirtualCluster, in_ns

QUEUE_S = 0.5          # a queue holds this many seconds of the link's rate (at least MIN_QUEUE)
MIN_QUEUE = 256 * 1024
# the token bucket holds 1 ms of the rate, at least MIN_BURST bytes (2 full frames and some):
# a larger bucket lets the first bytes after an idle spell through faster than the rate
BURST_S = 0.001
MIN_BURST = 4 * 1024


def _bits(rate_Bps: float) -> str:
    if not rate_Bps > 0:
        raise ValueError(f"a link rate must be > 0 bytes/s, not {rate_Bps}")
    return f"{int(round(8 * rate_Bps))}bit"


def burst_bytes(rate_Bps: float) -> int:
    return max(MIN_BURST, int(rate_Bps * BURST_S))


def set_uplink(vc: VirtualCluster, node: str, rate_Bps: float, live: bool = False) -> None:
    """Limit ``node``'s uplink to ``rate_Bps`` bytes/s (a token bucket). ``live``: change the
    rate of the bucket already there, keeping its queue (a link throttled mid-run); else
    replace whatever limit there was."""
    limit = max(MIN_QUEUE, int(rate_Bps * QUEUE_S))
    in_ns(node, "tc", "qdisc", "change" if live else "replace", "dev", vc.veth(node), "root",
          "tbf", "rate", _bits(rate_Bps), "burst", str(burst_bytes(rate_Bps)),
          "limit", str(limit))


def set_bottleneck(vc: VirtualCluster, node: str, rate_Bps: float) -> None:
    """Limit everything flowing into ``node`` (from every other node and the login node) to
    ``rate_Bps`` bytes/s, shared: one htb class, one FIFO behind it."""
    dev, b = vc.port(node), str(burst_bytes(rate_Bps))
    in_ns(vc.router, "tc", "qdisc", "del", "dev", dev, "root", check=False)  # htb: no replace
    in_ns(vc.router, "tc", "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb",
          "default", "10")
    in_ns(vc.router, "tc", "class", "add", "dev", dev, "parent", "1:", "classid", "1:10",
          "htb", "rate", _bits(rate_Bps), "ceil", _bits(rate_Bps), "burst", b, "cburst", b)


def clear(vc: VirtualCluster, node: str) -> None:
    """No limit on ``node``'s uplink nor into it (the veths' default: no queue at all)."""
    in_ns(node, "tc", "qdisc", "del", "dev", vc.veth(node), "root", check=False)
    in_ns(vc.router, "tc", "qdisc", "del", "dev", vc.port(node), "root", check=False)


def qdiscs(vc: VirtualCluster, node: str) -> list[dict]:
    """The qdiscs on both ends of ``node``'s link (``tc -s -j``), with where they sit."""
    out = []
    for ns, dev, side in ((node, vc.veth(node), "uplink"),
                          (vc.router, vc.port(node), "into")):
        r = in_ns(ns, "tc", "-s", "-j", "qdisc", "show", "dev", dev)
        for q in json.loads(r.stdout or "[]"):
            q["side"] = side
            out.append(q)
    return out


def counters(vc: VirtualCluster, node: str) -> dict[str, int]:
    """Bytes and packets ``node`` sent (``tx_*``) and received (``rx_*``) over its link."""
    r = in_ns(node, "ip", "-s", "-j", "link", "show", "dev", vc.veth(node))
    st = json.loads(r.stdout)[0]["stats64"]
    return {"tx_bytes": int(st["tx"]["bytes"]), "rx_bytes": int(st["rx"]["bytes"]),
            "tx_packets": int(st["tx"]["packets"]), "rx_packets": int(st["rx"]["packets"])}
