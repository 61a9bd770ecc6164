"""The Q-learning step for batches as samplers return them (the online loop's hot path).

:func:`update_small` gives exactly :meth:`QLearningAgent.update`'s result for 1-D int64
``obs``/``action``/``next_obs``, bool ``terminated`` and float32/float64 ``reward`` in
range, in one compiled call (:func:`replaystore.agents.kernels.q_step`, ~2 µs for 32
rows); anything else is ``None`` and goes to the general path, which checks it and says
what is wrong. :func:`update_small_numpy` is the same step in numpy (~20 µs): the
reference the kernel is tested against, and the path for float16 rewards and the like.
numba is imported on the first call, not with the package.

>>> import numpy as np
>>> from replaystore.agents import QLearningAgent
>>> agent = QLearningAgent(2, 2, alpha=1.0, gamma=0.9, alpha_schedule="constant")
>>> update_small(agent, {"obs": np.array([0, 0]), "action": np.array([1, 1]),
...                      "reward": np.array([1.0, 3.0]), "next_obs": np.array([1, 1]),
...                      "terminated": np.array([True, True])})
2.0
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["update_small", "update_small_numpy"]


_KERNEL: list = []  # [q_step, SCHEDULES] once loaded


def _kernel() -> list:
    from replaystore.agents.kernels import SCHEDULES, q_step

    _KERNEL[:] = [q_step, SCHEDULES]
    return _KERNEL


def update_small(agent, batch: Mapping[str, Any]) -> float | None:
    """:meth:`QLearningAgent.update` of a batch as samplers return it (1-D int64
    obs/action/next_obs, bool terminated and truncated, float reward, all in range), in
    one compiled call; None for anything else (the general path checks it and says
    what is wrong)."""
    try:
        s, a, s2 = batch["obs"], batch["action"], batch["next_obs"]
        r, term = batch["reward"], batch["terminated"]
    except KeyError:
        return None
    if agent.obs_start or agent.action_start:
        return None
    tr = batch.get("truncated")
    if tr is not None and (type(tr) is not np.ndarray or tr.dtype != np.bool_
                           or type(s) is not np.ndarray or tr.shape != s.shape):
        return None  # (ignored by the rule, but the general path checks it)
    q_step, schedules = _KERNEL or _kernel()
    q = agent.q
    scratch = agent._scratch
    if scratch is None or len(scratch[0]) != q.size:
        scratch = agent._scratch = (np.zeros(q.size, np.int64), np.zeros(q.size, np.float64))
    try:  # (its signatures take only the types above, and C-contiguous tables)
        out = q_step(q, agent.visits, scratch[0], scratch[1], s, a, r, s2, term, agent.gamma,
                     agent.alpha, schedules[agent.alpha_schedule], agent.alpha_power)
    except (TypeError, KeyError):
        return update_small_numpy(agent, batch)
    return None if out < 0.0 else out  # (-1: lengths differ or an index is out of range; NaN: NaN)


def update_small_numpy(agent, batch: Mapping[str, Any]) -> float | None:
    """:func:`update_small` in numpy, ~15 µs for 32 rows (no O(n_cells) or sorting work:
    duplicates are averaged through scratch tables); None for anything else, and for
    batches of more than 4096 rows."""
    try:
        s, a, s2 = batch["obs"], batch["action"], batch["next_obs"]
        r, term = batch["reward"], batch["terminated"]
    except KeyError:
        return None
    nd, i64 = np.ndarray, np.int64
    if (type(s) is not nd or type(a) is not nd or type(s2) is not nd or type(r) is not nd
            or type(term) is not nd or s.ndim != 1 or agent.obs_start or agent.action_start):
        return None
    m = len(s)
    if (not 0 < m <= 4096 or s.dtype != i64 or a.dtype != i64 or s2.dtype != i64
            or term.dtype != np.bool_ or r.dtype.kind != "f" or a.shape != s.shape
            or s2.shape != s.shape or r.shape != s.shape or term.shape != s.shape):
        return None
    tr = batch.get("truncated")
    if tr is not None and (type(tr) is not nd or tr.dtype != np.bool_ or tr.shape != s.shape):
        return None
    ns, na = agent.n_states, agent.n_actions
    q = agent.q
    if not (q.flags.c_contiguous and agent.visits.flags.c_contiguous):
        return None
    if (s | s2 | a).min() < 0:
        return None  # (the general path says which value is out of range)
    try:  # (2-D indexing refuses rows and actions past the table's end)
        bootstrap = q[s2].max(axis=1)
        q_sa = q[s, a]
    except IndexError:
        return None
    bootstrap[term] = 0.0
    td = r + agent.gamma * bootstrap - q_sa
    flat = s * na + a
    qf = q.reshape(-1)
    vf = agent.visits.reshape(-1)
    if len(set(flat.tolist())) == m:  # (no cell twice: the common case, no averaging)
        n = vf[flat] + 1
        vf[flat] = n
        delta = agent._step_size(1, n) * td
        qf[flat] += delta
        return float(np.abs(delta).max())
    n_cells = ns * na
    scratch = agent._scratch
    if scratch is None or len(scratch[0]) != n_cells:
        scratch = agent._scratch = (np.zeros(n_cells, np.int64), np.zeros(n_cells, np.float64))
    cnt, acc = scratch
    np.add.at(cnt, flat, 1)
    np.add.at(acc, flat, td)
    k = cnt[flat]
    mean_td = acc[flat] / k
    cnt[flat] = 0
    acc[flat] = 0.0
    # every copy of a cell carries the same k and mean, so writing them all (last one
    # wins) applies the step once per cell
    n = vf[flat] + k
    vf[flat] = n
    delta = agent._step_size(k, n) * mean_td
    qf[flat] += delta
    return float(np.abs(delta).max())
