"""pandas views of a store: rows as a DataFrame (``to_pandas``), one row per episode.

Both read the store block by block, so they work on stores much larger than RAM as
long as what is asked for fits.

>>> import tempfile, gymnasium as gym, replaystore as rs
>>> s = rs.create(tempfile.mkdtemp() + "/s", gym.spaces.Box(-2, 2, (2,)), gym.spaces.Discrete(3))
>>> s.extend({"obs": [[0, 0], [1, 1]], "action": [0, 2], "reward": [1.0, 2.0],
...           "next_obs": [[1, 1], [2, 2]], "terminated": [False, True], "truncated": [False, False]})
>>> s.to_pandas(fields=["obs", "action", "reward"]).columns.tolist()
['obs_0', 'obs_1', 'action', 'reward']
>>> s.episodes()[["episode", "length", "return", "terminated"]].values.tolist()
[[0, 2, 3.0, True]]
>>> s.close()
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from ..errors import RowIndexError

if TYPE_CHECKING:
    import pandas as pd

    from .store import ReplayStore

__all__ = ["to_pandas", "episodes", "columns", "BLOCK_ROWS"]

BLOCK_ROWS = 1 << 20


def columns(name: str, values: np.ndarray) -> dict[str, np.ndarray]:
    """Columns of one field's rows: ``name`` for scalars, ``name_0, name_1, ...`` otherwise.

    >>> list(columns("obs", np.zeros((2, 3))))
    ['obs_0', 'obs_1', 'obs_2']
    """
    if values.ndim == 1:
        return {name: values}
    flat = values.reshape(len(values), int(np.prod(values.shape[1:], dtype=np.int64)))
    if values.ndim == 2:
        return {f"{name}_{i}": flat[:, i] for i in range(flat.shape[1])}
    return {
        f"{name}_{'_'.join(map(str, ix))}": flat[:, j]
        for j, ix in enumerate(np.ndindex(*values.shape[1:]))
    }


def to_pandas(
    store: ReplayStore,
    fields=None,
    start: int | None = None,
    stop: int | None = None,
    *,
    max_columns_per_field: int = 64,
) -> pd.DataFrame:
    """Logical rows ``[start, stop)`` as a DataFrame.

    Vector fields become one column per component (``obs_0``, ``obs_1``, ...). A field
    with more than ``max_columns_per_field`` components (an image, say) is left out with
    a warning unless it was asked for by name. The index is the logical row number.
    """
    import pandas as pd  # imported when needed: it costs 30 MB and a second

    n = len(store)
    start, stop, _ = slice(start, stop).indices(n)
    stop = max(start, stop)
    explicit = fields is not None
    names = store.schema.select(fields)
    wide = [
        nm for nm in names
        if int(np.prod(store.schema[nm].shape, dtype=np.int64)) > max_columns_per_field
    ]
    if wide and not explicit:
        warnings.warn(
            f"to_pandas: left out wide field(s) {wide} (more than {max_columns_per_field} columns "
            "each); ask for them with fields=[...] or raise max_columns_per_field",
            stacklevel=3,
        )
        names = tuple(nm for nm in names if nm not in wide)
    data = store.read_range(start, stop, fields=names)  # (torn-free: see ReplayStore.read_range)
    cols: dict[str, np.ndarray] = {}
    for nm in names:
        cols.update(columns(nm, data[nm]))
    got = len(data[names[0]]) if names else stop - start  # (fewer if a ring writer evicted rows)
    return pd.DataFrame(cols, index=pd.RangeIndex(start, start + got, name="row"))


def episodes(store: ReplayStore, *, block_rows: int = BLOCK_ROWS) -> pd.DataFrame:
    """One row per episode: ``episode, first_row, length, return, terminated, truncated``.

    ``first_row`` is the logical row of the episode's first stored transition; ``complete``
    is false for an episode whose start a ring has already evicted (or that is still
    running). Reads only the ``episode``, ``reward``, ``terminated`` and ``truncated``
    fields, a block at a time, all blocks from one committed state: in a reader (mode
    ``"r"``) blocks are read by row id (whole rows, checked against a ring writer's
    floor), and if a writer in another process evicts rows not yet read, the table is
    made again from its newest state.
    """
    import pandas as pd

    for _ in range(_EPISODE_TRIES - 1):
        try:
            return _episodes(store, block_rows, pd)
        except RowIndexError:  # a ring writer evicted rows of this state before they were read
            store.refresh()
    return _episodes(store, block_rows, pd)


#: times episodes() starts again when a ring writer in another process evicts rows it has not read
_EPISODE_TRIES = 8
_EPISODE_FIELDS = ["episode", "step", "reward", "terminated", "truncated"]


def _episodes(store: ReplayStore, block_rows: int, pd) -> pd.DataFrame:
    cols = ["episode", "first_row", "length", "return", "terminated", "truncated", "complete"]
    by_id = store.mode == "r"  # (committed rows only: another process may be writing them)
    lo, hi = store.id_range
    n = hi - lo
    parts = []
    for a in range(0, n, block_rows):
        b = min(n, a + block_rows)
        d = (store.read_ids(lo + a, lo + b, fields=_EPISODE_FIELDS) if by_id
             else store.read_range(a, b, fields=_EPISODE_FIELDS))
        df = pd.DataFrame(
            {
                "episode": d["episode"],
                "row": np.arange(a, b, dtype=np.int64),
                "step": d["step"],
                "reward": d["reward"].astype(np.float64),
                "terminated": d["terminated"],
                "truncated": d["truncated"],
            }
        )
        g = df.groupby("episode", sort=False)
        parts.append(
            pd.DataFrame(
                {
                    "first_row": g["row"].min(),
                    "first_step": g["step"].min(),
                    "length": g.size(),
                    "return": g["reward"].sum(),
                    "terminated": g["terminated"].any(),
                    "truncated": g["truncated"].any(),
                }
            )
        )
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            cols, ["int64", "int64", "int64", "float64", "bool", "bool", "bool"], strict=True)})
    allp = pd.concat(parts)
    g = allp.groupby(level=0, sort=False)
    out = pd.DataFrame(
        {
            "first_row": g["first_row"].min(),
            "first_step": g["first_step"].min(),
            "length": g["length"].sum(),
            "return": g["return"].sum(),
            "terminated": g["terminated"].any(),
            "truncated": g["truncated"].any(),
        }
    )
    out.index.name = "episode"
    out = out.reset_index().sort_values("first_row", kind="stable").reset_index(drop=True)
    out["complete"] = (out["first_step"] == 0) & (out["terminated"] | out["truncated"])
    out = out.drop(columns="first_step")
    return out[cols]
