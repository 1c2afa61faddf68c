"""Uplink channel models (docs/design.md §5): per-slot rates R_i(s) in **bytes per slot**.

Pure and seeded: ``rates(s)`` depends only on (seed, s), whatever order slots are asked in, so
the MPI runtime, the simulator and the tests see the same realisation. Rates are drawn in
blocks of :data:`BLOCK` slots from ``default_rng([seed, tag, block])`` (one generator per block,
not per slot, which would cost more than a scheduler step).

Models (``--channel``):

* ``ideal``: infinite rates; ``channel.ideal`` is True and the runtime does not emulate the link.
* ``constant``: fixed per-worker rates (default B*tau_s*log2(1 + snr_i), the near/far profile).
* ``rayleigh``: block fading, R_i = B*tau_s*log2(1 + snr_i*h), h ~ Exp(1) i.i.d. per slot and
  worker; E[R_i] = B*tau_s*e^(1/snr_i)*E1(1/snr_i)/ln 2.
* ``gilbert-elliott``: each worker's link is a two-state Markov chain per slot (good/bad) with
  rate B*tau_s*log2(1 + snr_i) when good and ``bad_factor`` times that when bad.
* ``trace``: replays a file of rates, slots x workers in bytes per slot, cycling when
  exhausted: ``.npy`` (2-D float array) or text/CSV (one row per slot, comma or whitespace
  separated, ``#`` comments). One column is broadcast to every worker.

The near/far profile spreads the workers' mean SNR linearly in dB over ``spread_db`` around
``snr_db``: worker 0 is the nearest (snr_db + spread/2), worker N-1 the farthest.

Every channel is registered by name (``--channel NAME``,
:func:`mpicode.registry.register_channel`), owns its options and builds itself from a
configuration (:meth:`Channel.from_config`); a plugin adds one the same way
(docs/extending.md). ``trace`` is registered by :mod:`mpicode.io.replay`, which reads the
file; nothing here reads one.
"""

from __future__ import annotations

import math

import numpy as np

from mpicode import registry
from mpicode.options import Option, finite_float, nonneg, option_values, positive
from mpicode.registry import register_channel

BLOCK = 1024
EULER = 0.5772156649015329


def snr_profile(n_workers: int, snr_db: float = 10.0, spread_db: float = 20.0) -> np.ndarray:
    """Per-worker mean SNR (linear), spread linearly in dB, nearest (highest) first."""
    if n_workers == 1:
        db = np.array([snr_db], float)
    else:
        db = snr_db + spread_db * (0.5 - np.arange(n_workers) / (n_workers - 1))
    return 10.0 ** (db / 10.0)


def expint_e1(x: float) -> float:
    """Exponential integral E1(x) for x > 0 (series below 1, continued fraction above)."""
    if x <= 0:
        raise ValueError("E1 needs x > 0")
    if x <= 1.0:
        s, term, k = 0.0, 1.0, 1
        while True:
            term *= -x / k
            d = term / k
            s += d
            if abs(d) < 1e-17 * max(1.0, abs(s)):
                break
            k += 1
        return -EULER - math.log(x) - s
    # modified Lentz on the continued fraction of e^x E1(x)
    tiny = 1e-300
    b = x + 1.0
    c = 1.0 / tiny
    d = 1.0 / b
    h = d
    for i in range(1, 1000):
        an = -float(i * i)
        b += 2.0
        d = 1.0 / (an * d + b)
        c = b + an / c
        delta = c * d
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h * math.exp(-x)


def rayleigh_mean_bits(snr: float) -> float:
    """E[log2(1 + snr*h)] for h ~ Exp(1): e^(1/snr) E1(1/snr) / ln 2."""
    if snr <= 0:
        return 0.0
    if 1.0 / snr > 700:  # e^(1/snr) overflows; log2(1+snr h) ~ snr h / ln 2 there
        return snr / math.log(2.0)
    return math.exp(1.0 / snr) * expint_e1(1.0 / snr) / math.log(2.0)


BANDWIDTH = Option("bandwidth", finite_float, 5e6, "channel bandwidth B in bytes/s",
                   check=positive, group="comm")
SNR_DB = Option("snr_db", finite_float, 10.0, "mean SNR (dB) of the middle worker", group="comm")
SNR_SPREAD_DB = Option("snr_spread_db", finite_float, 20.0,
                       "near/far spread of mean SNR across workers (dB)", check=nonneg,
                       group="comm")
NEAR_FAR = (BANDWIDTH, SNR_DB, SNR_SPREAD_DB)  # the options of every near/far channel


def near_far(cfg, n_workers: int) -> tuple[np.ndarray, float]:
    """(mean SNR of each worker, bytes per slot B*tau_s) of a configuration."""
    return (snr_profile(n_workers, cfg.snr_db, cfg.snr_spread_db),
            cfg.bandwidth * cfg.slot_ms / 1000.0)


class Channel:
    """Base class. Subclasses fill :meth:`_make_block` (rates of slots b*BLOCK .. +BLOCK)
    and :meth:`mean_rates`, declare their ``options`` and, unless the default does, build
    themselves in :meth:`from_config`.

    The contract (:func:`mpicode.testing.check_channel`): ``rates(s)`` is a function of the
    seed and ``s`` only, whatever order slots are asked in; rates are >= 0 (``inf`` only for
    an ``ideal`` channel)."""

    name = "base"
    ideal = False
    options: tuple[Option, ...] = ()
    _tag = 0

    @classmethod
    def option_values(cls, cfg) -> dict:
        """This class's options as ``cfg`` gives them (its default where ``cfg`` has none)."""
        return option_values(cls.options, cfg)

    @classmethod
    def from_config(cls, cfg, n_workers: int) -> Channel:
        """The channel of a configuration: ``seed``, ``slot_ms`` and the class's options."""
        return cls(n_workers, seed=cfg.seed, slot_s=cfg.slot_ms / 1000.0,
                   **cls.option_values(cfg))

    def __init__(self, n_workers: int, seed: int = 0, slot_s: float = 0.002):
        if n_workers < 1:
            raise ValueError("need at least one worker")
        self.N = int(n_workers)
        self.seed = int(seed)
        self.slot_s = float(slot_s)
        self._cache: dict[int, np.ndarray] = {}

    def _rng(self, block: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 0xC4A7, self._tag, block])

    def _make_block(self, block: int) -> np.ndarray:
        raise NotImplementedError

    def _block(self, block: int) -> np.ndarray:
        arr = self._cache.get(block)
        if arr is None:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            arr = np.ascontiguousarray(self._make_block(block), dtype=np.float64)
            arr.flags.writeable = False
            self._cache[block] = arr
        return arr

    def rates(self, slot: int) -> np.ndarray:
        """Rates of every worker in slot ``slot`` (bytes/slot, read-only array of N floats)."""
        if slot < 0:
            raise ValueError("slot must be >= 0")
        return self._block(slot // BLOCK)[slot % BLOCK]

    def samples(self, start: int, count: int) -> np.ndarray:
        """Rates of slots start .. start+count-1, as a (count, N) array."""
        out = np.empty((count, self.N))
        s = start
        while s < start + count:
            b, off = divmod(s, BLOCK)
            n = min(BLOCK - off, start + count - s)
            out[s - start:s - start + n] = self._block(b)[off:off + n]
            s += n
        return out

    def mean_rates(self) -> np.ndarray:
        """Expected rate of each worker (bytes/slot)."""
        raise NotImplementedError


@register_channel
class Ideal(Channel):
    """No emulation: every rate is infinite (the runtime sends directly)."""

    name = "ideal"
    ideal = True

    def _make_block(self, block):
        return np.full((BLOCK, self.N), np.inf)

    def mean_rates(self):
        return np.full(self.N, np.inf)


@register_channel
class Constant(Channel):
    """Fixed per-worker rates: B*tau_s*log2(1 + snr_i) from the near/far profile."""

    name = "constant"
    options = NEAR_FAR
    _tag = 1

    @classmethod
    def from_config(cls, cfg, n_workers):
        snr, per_slot = near_far(cfg, n_workers)
        return cls(n_workers, per_slot * np.log2(1 + snr), cfg.seed, cfg.slot_ms / 1000.0)

    def __init__(self, n_workers, rates, seed=0, slot_s=0.002):
        super().__init__(n_workers, seed, slot_s)
        r = np.broadcast_to(np.asarray(rates, float), (self.N,)).copy()
        if not np.all(np.isfinite(r)) or np.any(r < 0):
            raise ValueError("constant channel: rates must be finite and >= 0")
        self.r = r

    def _make_block(self, block):
        return np.broadcast_to(self.r, (BLOCK, self.N))

    def mean_rates(self):
        return self.r.copy()


@register_channel
class Rayleigh(Channel):
    """Block Rayleigh fading: R_i = scale * log2(1 + snr_i h), h ~ Exp(1) per slot and worker."""

    name = "rayleigh"
    options = NEAR_FAR
    _tag = 2

    @classmethod
    def from_config(cls, cfg, n_workers):
        snr, per_slot = near_far(cfg, n_workers)
        return cls(n_workers, snr, per_slot, cfg.seed, cfg.slot_ms / 1000.0)

    def __init__(self, n_workers, snr, bytes_per_slot, seed=0, slot_s=0.002):
        super().__init__(n_workers, seed, slot_s)
        self.snr = np.broadcast_to(np.asarray(snr, float), (self.N,)).copy()
        self.scale = float(bytes_per_slot)  # B * tau_s

    def _make_block(self, block):
        h = self._rng(block).standard_exponential((BLOCK, self.N))
        return self.scale * np.log2(1.0 + self.snr * h)

    def mean_rates(self):
        return self.scale * np.array([rayleigh_mean_bits(s) for s in self.snr])


@register_channel
class GilbertElliott(Channel):
    """Two-state Markov link per worker: good rate ``good``, bad rate ``bad_factor*good``;
    P(good -> bad) = p_bad and P(bad -> good) = p_good per slot; starts in the stationary law."""

    name = "gilbert-elliott"
    options = NEAR_FAR
    _tag = 3

    @classmethod
    def from_config(cls, cfg, n_workers):
        snr, per_slot = near_far(cfg, n_workers)
        return cls(n_workers, per_slot * np.log2(1 + snr), cfg.seed, cfg.slot_ms / 1000.0)

    def __init__(self, n_workers, good, seed=0, slot_s=0.002, p_bad=0.05, p_good=0.3,
                 bad_factor=0.1):
        super().__init__(n_workers, seed, slot_s)
        self.good = np.broadcast_to(np.asarray(good, float), (self.N,)).copy()
        self.p_bad, self.p_good, self.bad_factor = float(p_bad), float(p_good), float(bad_factor)
        if not (0 <= self.p_bad <= 1 and 0 <= self.p_good <= 1 and self.p_bad + self.p_good > 0):
            raise ValueError("gilbert-elliott: transition probabilities must be in [0, 1]")
        pi_bad = self.p_bad / (self.p_bad + self.p_good)
        init = np.random.default_rng([self.seed, 0xC4A7, self._tag, 1 << 40]).random(self.N)
        self._start = [init < pi_bad]  # bad-state flags at the start of block 0, 1, ...

    def _states(self, block):
        """Bad flags, (BLOCK, N), of this block; blocks are chained in order."""
        while len(self._start) <= block:
            self._start.append(self._run(len(self._start) - 1)[1])
        return self._run(block)[0]

    def _run(self, block):
        """(bad flags of the block, state after its last slot)."""
        u = self._rng(block).random((BLOCK, self.N))
        bad = np.empty((BLOCK, self.N), bool)
        cur = self._start[block].copy()
        for t in range(BLOCK):
            bad[t] = cur
            cur = np.where(cur, u[t] >= self.p_good, u[t] < self.p_bad)
        return bad, cur

    def _make_block(self, block):
        bad = self._states(block)
        return np.where(bad, self.bad_factor * self.good, self.good)

    def mean_rates(self):
        pi_bad = self.p_bad / (self.p_bad + self.p_good)
        return self.good * (1 - pi_bad + pi_bad * self.bad_factor)


class Trace(Channel):
    """Replays a table of rates, slots x workers in bytes per slot, cycling when exhausted
    (``--channel trace``: :class:`mpicode.io.replay.TraceChannel` reads the file)."""

    name = "trace"

    def __init__(self, n_workers, data, seed=0, slot_s=0.002, path: str = ""):
        super().__init__(n_workers, seed, slot_s)
        self.path = str(path)
        self.data = rate_table(data, self.N, f"channel trace {path}" if path else "rates")

    def _make_block(self, block):
        idx = (block * BLOCK + np.arange(BLOCK)) % len(self.data)
        return self.data[idx]

    def mean_rates(self):
        return self.data.mean(axis=0)


def rate_table(data, n_workers: int, where: str) -> np.ndarray:
    """``data`` checked as a rate table, slots x workers in bytes/slot (one column is
    broadcast to every worker); ValueError naming ``where`` if it is not one."""
    data = np.asarray(data, dtype=float)
    if data.ndim == 1:
        data = data[:, None]
    if data.ndim != 2 or data.shape[0] == 0:
        raise ValueError(f"{where}: need a non-empty 2-D table slots x workers, "
                         f"got shape {data.shape}")
    if data.shape[1] == 1:
        data = np.repeat(data, n_workers, axis=1)
    if data.shape[1] != n_workers:
        raise ValueError(f"{where}: {data.shape[1]} columns, need {n_workers} "
                         "(one per worker) or 1")
    if not np.all(np.isfinite(data)) or np.any(data < 0):
        raise ValueError(f"{where}: rates must be finite and >= 0 (bytes/slot)")
    return np.ascontiguousarray(data)


def make_channel(cfg, n_workers: int) -> Channel:
    """The channel ``cfg.channel`` names, built by its registered class from ``cfg`` (an
    error naming the choices if none is registered)."""
    return registry.channel(cfg.channel).from_config(cfg, n_workers)
