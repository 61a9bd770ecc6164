"""Episode ids and steps of appended rows: filled in, or tracked when given.

The writer's state keeps ``episode`` (id of the running episode), ``step`` (its next step)
and ``next_episode`` (the next free id); a new episode starts after a row whose
``terminated`` or ``truncated`` is true.

>>> import numpy as np
>>> state = {"episode": 0, "step": 0, "next_episode": 1}
>>> rows = {"terminated": np.array([False, True, False]), "truncated": np.zeros(3, bool),
...         "reward": np.zeros(3)}
>>> fill_episodes(rows, 3, state)
>>> rows["episode"].tolist(), rows["step"].tolist(), state
([0, 0, 1], [0, 1, 0], {'episode': 1, 'step': 1, 'next_episode': 2})
"""

from __future__ import annotations

import numpy as np

__all__ = ["fill_episodes", "track_episodes"]


def fill_episodes(arrays: dict[str, np.ndarray], n: int, state: dict) -> None:
    """Add ``episode`` and ``step`` to ``n`` rows (one row when they are scalars)."""
    cur_ep, cur_step, nxt = int(state["episode"]), int(state["step"]), int(state["next_episode"])
    done = (arrays["terminated"] | arrays["truncated"]).reshape(n)
    if n == 1 and arrays["reward"].ndim == 0:
        arrays["episode"] = np.int64(cur_ep)
        arrays["step"] = np.int64(cur_step)
        if done[0]:
            state.update(episode=nxt, step=0, next_episode=nxt + 1)
        else:
            state["step"] = cur_step + 1
        return
    d = done.astype(np.int64)
    before = np.cumsum(d) - d  # dones strictly before each row
    ep = np.where(before == 0, cur_ep, nxt + before - 1)
    idx = np.arange(n, dtype=np.int64)
    last_done = np.where(done, idx, -1)
    prev = np.maximum.accumulate(np.concatenate(([-1], last_done[:-1])))
    step = np.where(prev < 0, cur_step + idx, idx - prev - 1)
    arrays["episode"] = ep.astype(np.int64)
    arrays["step"] = step.astype(np.int64)
    ndone = int(d.sum())
    if done[-1]:
        state.update(episode=nxt + ndone - 1, step=0, next_episode=nxt + ndone)
    else:
        state.update(episode=int(ep[-1]), step=int(step[-1]) + 1, next_episode=nxt + ndone)


def track_episodes(arrays: dict[str, np.ndarray], n: int, state: dict) -> None:
    """Rows that carry their own ``episode``/``step``: keep the counters after them."""
    if not n:
        return
    ep, st = arrays["episode"], arrays["step"]
    last_done = bool(arrays["terminated"].reshape(n)[-1] or arrays["truncated"].reshape(n)[-1])
    state["next_episode"] = max(int(state["next_episode"]), int(ep.max()) + 1)
    if last_done:
        state["episode"] = state["next_episode"]
        state["next_episode"] += 1
        state["step"] = 0
    else:
        state["episode"] = int(ep.reshape(n)[-1])
        state["step"] = int(st.reshape(n)[-1]) + 1
