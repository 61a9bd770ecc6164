"""Compiled (numba) Q-learning step for small batches: the online loop's hot path.

:func:`q_step` does in one call what :func:`replaystore.agents.small_batch.update_small_numpy`
does in ~20 numpy calls, with the same arithmetic in the same order, so the Q-table, the
visit counts and the returned value are the same (bit for bit; ``"polynomial"`` goes
through ``pow`` and may differ from numpy's by 1 ulp). Only
:mod:`replaystore.agents.small_batch` imports this module, on the first update, so
``import replaystore`` does not load numba. Compiled once per installation (``cache=True``).

>>> import numpy as np
>>> q, visits = np.zeros((2, 2)), np.zeros((2, 2), np.int64)
>>> cnt, acc = np.zeros(4, np.int64), np.zeros(4)
>>> i = np.array([0, 0])
>>> q_step(q, visits, cnt, acc, i, i + 1, np.array([1.0, 3.0]), i + 1, np.array([True, True]),
...        0.9, 1.0, SCHEDULES["constant"], 0.8)
2.0
>>> q.tolist(), visits.tolist()
([[0.0, 2.0], [0.0, 0.0]], [[0, 2], [0, 0]])
"""

from __future__ import annotations

import numpy as np
from numba import boolean, float32, float64, int64, njit

__all__ = ["q_step", "SCHEDULES"]

#: ``alpha_schedule`` name -> the code :func:`q_step` takes
SCHEDULES = {"visits": 0, "polynomial": 1, "constant": 2}


def _signature(reward):
    table, scratch, rows = float64[:, ::1], int64[::1], int64[:]
    return float64(table, int64[:, ::1], scratch, float64[::1], rows, rows, reward[:], rows,
                   boolean[:], float64, float64, int64, float64)


# explicit signatures: other types raise TypeError (the caller's numpy path), never compile
@njit([_signature(float64), _signature(float32)], cache=True, nogil=True)
def q_step(q, visits, cnt, acc, s, a, r, s2, term, gamma, alpha, schedule, power):  # pragma: no cover - compiled
    """One synchronous Q-learning step of the batch ``(s, a, r, s2, term)`` (1-D, one
    length) on the C-contiguous tables ``q`` (float64) and ``visits`` (int64); duplicates
    of a cell have their TD errors averaged and step once. ``cnt``/``acc`` are all-zero
    scratch tables of ``q.size`` entries (left all-zero). Returns the largest ``|Delta Q|``,
    or -1.0 (nothing changed) if the lengths differ or an index is out of range."""
    ns, na = q.shape
    m = s.shape[0]
    if a.shape[0] != m or r.shape[0] != m or s2.shape[0] != m or term.shape[0] != m:
        return -1.0
    for i in range(m):
        if not (0 <= s[i] < ns and 0 <= a[i] < na and 0 <= s2[i] < ns):
            return -1.0
    qf = q.reshape(-1)
    vf = visits.reshape(-1)
    td = np.empty(m)
    # TD errors against the table as it was before the batch
    for i in range(m):
        if term[i]:
            boot = 0.0
        else:
            row = s2[i]
            boot = q[row, 0]
            if boot == boot:  # np.max: a NaN anywhere gives NaN
                for j in range(1, na):
                    v = q[row, j]
                    if v > boot:
                        boot = v
                    elif v != v:
                        boot = v
                        break
        c = s[i] * na + a[i]
        td[i] = np.float64(r[i]) + gamma * boot - qf[c]
        cnt[c] += 1
        acc[c] += td[i]
    best = 0.0
    for i in range(m):
        c = s[i] * na + a[i]
        k = cnt[c]
        if k == 0:  # (a copy of a cell already stepped)
            continue
        mean_td = acc[c] / k
        cnt[c] = 0
        acc[c] = 0.0
        n = vf[c] + k
        vf[c] = n
        if schedule == 0:
            step = alpha * k / (k + (1.0 - gamma) * (n - k))
        elif schedule == 1:
            step = alpha * (k / n) ** power
        else:
            step = alpha
        delta = step * mean_td
        qf[c] += delta
        d = abs(delta)
        if best == best and (d > best or d != d):
            best = d
    return best
