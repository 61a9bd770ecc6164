"""A picture of a tabular agent's greedy policy on a grid world: arrows over a heat map
of the state values ``V(s) = max_a Q(s, a)``.

FrozenLake (any map, from ``env.unwrapped.desc``; holes and the goal marked, no arrows
there: they end the episode), CliffWalking (4 x 12; the cliff and the goal marked) and
Taxi (5 x 5 taxi positions, walls drawn; two panels for one passenger/destination pair:
the passenger waiting at its location, then riding in the taxi; ``P``/``D`` mark cells
whose greedy action is pickup/dropoff). Arrows follow each env's own action numbers
(FrozenLake 0 left, 1 down, 2 right, 3 up; CliffWalking 0 up, 1 right, 2 down, 3 left;
Taxi 0 south, 1 north, 2 east, 3 west, 4 pickup, 5 dropoff).

>>> import tempfile, pathlib, gymnasium as gym
>>> from replaystore.agents import QLearningAgent
>>> agent = QLearningAgent(16, 4)
>>> agent.q[:, 2] = 1.0  # always right
>>> env = gym.make("FrozenLake-v1")
>>> fig = plot_policy(agent, env, pathlib.Path(tempfile.mkdtemp()) / "p.png")
>>> fig.get_suptitle()
'FrozenLake-v1 {"map_name": "4x4"}\\ngreedy policy (arrows) over V(s) = max_a Q(s,a)'
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ..errors import PlotError
from .common import ACTION_NAMES, new_figure, out_format, save_figure

__all__ = ["plot_policy", "GRID_ENVS", "TAXI_LOCATIONS"]

#: the gymnasium env classes this module draws
GRID_ENVS = tuple(ACTION_NAMES)
#: Taxi's four pick-up/drop-off locations, by index
TAXI_LOCATIONS = ("R", "G", "Y", "B")
#: (dx, dy) on the picture (y grows downwards) of each move action, by env class
_MOVES = {
    "FrozenLakeEnv": {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)},
    "CliffWalkingEnv": {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)},
    "TaxiEnv": {0: (0, 1), 1: (0, -1), 2: (1, 0), 3: (-1, 0)},
}
_MARKS = {"TaxiEnv": {4: "P", 5: "D"}}


def _q_table(agent: Any) -> np.ndarray:
    q = getattr(agent, "q", None)
    if not isinstance(q, np.ndarray) or q.ndim != 2:
        raise PlotError(f"the agent {agent!r} has no Q-table (an (n_states, n_actions) array "
                        "`q`): only tabular agents have a policy picture")
    return q


def plot_policy(agent: Any, env: Any, out: str | os.PathLike[str], *, passenger: int = 0,
                destination: int = 1, title: str | None = None) -> Any:
    """Draw the greedy policy of the tabular ``agent`` (its ``q`` array) on the grid-world
    ``env`` (a gymnasium env: FrozenLake, CliffWalking or Taxi) into ``out`` (``.png`` or
    ``.svg``); return the ``Figure``: FrozenLake 7 x 6 inches, CliffWalking 13 x 4.8, Taxi
    12 x 5.6 (100 pixels an inch). ``passenger``/``destination``: Taxi's pair of
    locations (0-3: R, G, Y, B) the two panels show."""
    out_format(out)
    q = _q_table(agent)
    kind = type(env.unwrapped).__name__
    env_id = env.spec.id if env.spec is not None else kind
    if kind not in GRID_ENVS:
        raise PlotError(f"environment {env_id!r} ({kind}): the policy picture draws the grid worlds "
                        "FrozenLake, CliffWalking and Taxi only")
    n_states, n_actions = int(env.observation_space.n), int(env.action_space.n)
    if q.shape != (n_states, n_actions):
        raise PlotError(f"the agent's Q-table has shape {tuple(q.shape)} but the environment "
                        f"{env_id!r} has {n_states} states and {n_actions} actions")
    u = env.unwrapped
    if kind == "TaxiEnv":
        for name, v in (("passenger", passenger), ("destination", destination)):
            if not 0 <= int(v) <= 3:
                raise PlotError(f"{name}={v!r}: a Taxi location is 0-3 (R, G, Y, B)")
        return _taxi(q, u, _env_name(env), int(passenger), int(destination), out, title)
    if kind == "FrozenLakeEnv":
        desc = np.asarray(u.desc).astype(str)
        fig = new_figure(7, 6)
        ax = fig.subplots()
        terminal = np.isin(desc, ["H", "G"])
        marks = {(r, c): (desc[r, c], "white" if desc[r, c] == "H" else "black")
                 for r, c in zip(*np.nonzero(desc != "F"), strict=True)}
        shade = {(r, c): "#252525" for r, c in zip(*np.nonzero(desc == "H"), strict=True)}
        shade.update({(r, c): "#f2c14e" for r, c in zip(*np.nonzero(desc == "G"), strict=True)})
        legend = "S start, H hole (black), G goal"
    else:
        rows, cols = (int(x) for x in u.shape)
        desc = np.full((rows, cols), "")
        desc[rows - 1, 1:cols - 1] = "C"
        desc[rows - 1, 0], desc[rows - 1, cols - 1] = "S", "G"
        terminal = np.isin(desc, ["C", "G"])
        marks = {(rows - 1, 0): ("S", "black"), (rows - 1, cols - 1): ("G", "black")}
        shade = {(rows - 1, c): "#8c2d04" for c in range(1, cols - 1)}
        shade[(rows - 1, cols - 1)] = "#f2c14e"
        legend = "S start, cliff (brown: −100, back to S), G goal"
        fig = new_figure(13, 4.8)
        ax = fig.subplots()
    v = q.max(axis=1).reshape(desc.shape)
    greedy = q.argmax(axis=1).reshape(desc.shape)
    _grid(fig, ax, v, greedy, kind, terminal, marks, shade)
    ax.set_title(legend)
    ax.set_xlabel("column")
    ax.set_ylabel("row")
    fig.suptitle(title or f"{_env_name(env)}\ngreedy policy (arrows) over V(s) = max_a Q(s,a)")
    save_figure(fig, out)
    return fig


def _env_name(env: Any) -> str:
    """``FrozenLake-v1 {"is_slippery": false}``: the id and the kwargs it was made with."""
    spec = env.spec
    if spec is None:
        return type(env.unwrapped).__name__
    kwargs = {k: v for k, v in (spec.kwargs or {}).items() if k != "render_mode"}
    return f"{spec.id} {json.dumps(kwargs, default=str)}" if kwargs else spec.id


def _light(color: str) -> bool:
    r, g, b = (int(color[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.299 * r + 0.587 * g + 0.114 * b > 0.5


def _grid(fig: Any, ax: Any, v: np.ndarray, greedy: np.ndarray, kind: str, skip: np.ndarray,
          marks: dict, shade: dict, *, colorbar: bool = True, vrange: tuple | None = None,
          outline: dict | None = None) -> None:
    """Heat map of ``v``, an arrow (or a mark) per cell not in ``skip``, labels, cells
    filled (``shade``) or framed (``outline``) in a colour: ``{(row, col): "#rrggbb"}``."""
    from matplotlib.patches import Rectangle

    rows, cols = v.shape
    lo, hi = vrange or (float(v.min()), float(v.max()))
    im = ax.imshow(v, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1e-9,
                   interpolation="nearest")
    if colorbar:
        fig.colorbar(im, ax=ax, label="V(s) = max_a Q(s,a)", shrink=0.9)
    moves, special = _MOVES[kind], _MARKS.get(kind, {})
    mid = (lo + hi) / 2
    for (r, c), color in shade.items():
        ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor=color, edgecolor="none"))
    for (r, c), color in (outline or {}).items():
        ax.add_patch(Rectangle((c - 0.44, r - 0.44), 0.88, 0.88, fill=False, edgecolor=color, lw=4,
                               zorder=3))
    for r in range(rows):
        for c in range(cols):
            ink = "black" if v[r, c] > mid else "white"
            if (r, c) in shade:
                ink = "black" if _light(shade[(r, c)]) else "white"
            if (r, c) in marks:
                text, mark_ink = marks[(r, c)]
                ax.text(c - 0.42, r - 0.42, text, ha="left", va="top", fontsize=11,
                        fontweight="bold", color=mark_ink if (r, c) in shade else ink)
            if skip[r, c]:
                continue
            a = int(greedy[r, c])
            if a in moves:
                dx, dy = moves[a]
                ax.annotate("", xy=(c + 0.32 * dx, r + 0.32 * dy), xytext=(c - 0.32 * dx, r - 0.32 * dy),
                            arrowprops={"arrowstyle": "-|>", "color": ink, "lw": 2, "mutation_scale": 16})
            else:
                ax.text(c, r, special.get(a, str(a)), ha="center", va="center", fontsize=14,
                        fontweight="bold", color="#d7301f")
            if rows * cols <= 100:
                ax.text(c + 0.45, r + 0.45, f"{v[r, c]:.2f}", ha="right", va="bottom",
                        fontsize=7, color=ink)
    ax.set_xticks(range(cols))
    ax.set_yticks(range(rows))
    ax.set_xticks(np.arange(-0.5, cols, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, rows, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1)
    ax.tick_params(which="minor", length=0)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)


def _taxi(q: np.ndarray, u: Any, env_id: str, passenger: int, destination: int,
          out: str | os.PathLike[str], title: str | None) -> Any:
    locs = [tuple(int(x) for x in loc) for loc in u.locs]
    desc = np.asarray(u.desc).astype(str)
    fig = new_figure(12, 5.6)
    axes = fig.subplots(1, 2)
    states = {}
    for pas, name in ((passenger, f"passenger waiting at {TAXI_LOCATIONS[passenger]}"),
                      (4, "passenger in the taxi")):
        s = np.array([u.encode(r, c, pas, destination) for r in range(5) for c in range(5)])
        states[name] = s
    vs = [q[s].max(axis=1).reshape(5, 5) for s in states.values()]
    vrange = (min(float(x.min()) for x in vs), max(float(x.max()) for x in vs))
    marks = {loc: (TAXI_LOCATIONS[i], "black") for i, loc in enumerate(locs)}
    shade = {locs[destination]: "#f2c14e"}
    if passenger != destination:
        shade[locs[passenger]] = "#6baed6"
    for k, (ax, (name, s), v) in enumerate(zip(axes, states.items(), vs, strict=True)):
        greedy = q[s].argmax(axis=1).reshape(5, 5)
        frames = shade if k == 0 else {locs[destination]: "#f2c14e"}
        _grid(fig, ax, v, greedy, "TaxiEnv", np.zeros((5, 5), bool), marks, {},
              colorbar=k == 1, vrange=vrange, outline=frames)
        for r in range(5):  # walls: '|' between two cells in the map
            for c in range(4):
                if desc[1 + r, 2 * c + 2] == "|":
                    ax.plot([c + 0.5, c + 0.5], [r - 0.5, r + 0.5], color="#d7301f", lw=4)
        ax.set_title(f"{name}, destination {TAXI_LOCATIONS[destination]}")
        ax.set_xlabel("taxi column; P = pickup, D = dropoff, red bars = walls")
        ax.set_ylabel("taxi row")
    fig.suptitle(title or f"{env_id}: greedy policy over V(s) = max_a Q(s,a) by taxi position, for "
                          f"the passenger at {TAXI_LOCATIONS[passenger]} (blue frame) and the "
                          f"destination {TAXI_LOCATIONS[destination]} (gold frame)")
    save_figure(fig, out)
    return fig
