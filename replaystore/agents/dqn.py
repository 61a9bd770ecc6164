"""Deep Q-learning (Mnih et al. 2015) and discrete CQL (Kumar et al. 2020), in PyTorch.

:class:`DQNAgent` is an MLP Q-network ``obs -> Q(obs, .)`` with a target network: each
:meth:`~DQNAgent.update` is one gradient step on the Huber loss of
``Q(s, a) - (r + discount * max_a' Q_target(s', a'))`` (no bootstrap where
``terminated``; a time-limit ``truncated`` row bootstraps from its real final
observation; ``discount`` is the batch's n-step ``discount`` field when it has one, else
``gamma``), Adam, gradients clipped to ``max_grad_norm``, the target network copied every
``target_update`` steps. A batch with ``weight`` (prioritized replay) weights each row's
loss, and every update leaves the rows' ``|TD error|`` in ``batch["td_error"]``.
:class:`DiscreteCQLAgent` adds ``cql_alpha * (logsumexp_a Q(s, a) - Q(s, a_data))`` to
keep the values of actions the data never took low (offline training).

Observations: a 1-D ``Box`` (flattened otherwise) or a ``Discrete`` (one-hot). Actions:
``Discrete``. Saved as one ``.pt`` file of tensors and JSON-able settings, read back with
``torch.load(weights_only=True)``: loading never runs code from the file.

Needs the ``torch`` extra (``pip install "replaystore[torch]"``); importing this module
does not import torch.

>>> import gymnasium as gym
>>> agent = DQNAgent.from_spaces(gym.spaces.Box(-1, 1, (4,)), gym.spaces.Discrete(2), seed=0)
>>> import numpy as np
>>> agent.act(np.zeros(4, np.float32)) in (0, 1)
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from replaystore.agents.base import Agent
from replaystore.errors import AgentConfigError, MissingExtraError

__all__ = ["DQNAgent", "DiscreteCQLAgent", "require_torch"]

FORMAT_VERSION = 1


def require_torch():
    """``torch``, or :class:`~replaystore.errors.MissingExtraError` naming the extra."""
    try:
        import torch
    except ImportError as e:
        raise MissingExtraError(f"deep agents need PyTorch, which is not installed ({e}): "
                                "pip install \"replaystore[torch]\"") from None
    return torch


def _mlp(torch, n_in: int, hidden: Sequence[int], n_out: int):
    layers, last = [], n_in
    for h in hidden:
        layers += [torch.nn.Linear(last, h), torch.nn.ReLU()]
        last = h
    layers.append(torch.nn.Linear(last, n_out))
    return torch.nn.Sequential(*layers)


class DQNAgent(Agent, saved_format="replaystore.DQNAgent", suffixes=(".pt",)):
    """Deep Q-learning over ``obs_dim`` inputs (``n_obs_states`` > 0: one-hot of a
    Discrete observation) and ``n_actions`` actions. See the module docstring."""

    batch_fields = ("obs", "action", "reward", "next_obs", "terminated")
    batched_act = True
    kind = "dqn"

    def __init__(self, obs_dim: int, n_actions: int, *, hidden: Sequence[int] = (256, 256),
                 lr: float = 2.3e-3, gamma: float = 0.99, target_update: int = 128,
                 max_grad_norm: float = 10.0, n_obs_states: int = 0, action_start: int = 0,
                 seed: int = 0, device: str = "cpu") -> None:
        torch = require_torch()
        for name, v, ok in (("obs_dim", obs_dim, obs_dim >= 1), ("n_actions", n_actions, n_actions >= 1),
                            ("lr", lr, lr > 0), ("gamma", gamma, 0 <= gamma <= 1),
                            ("target_update", target_update, target_update >= 1),
                            ("max_grad_norm", max_grad_norm, max_grad_norm > 0)):
            if not ok:
                raise AgentConfigError(f"{type(self).__name__}: {name} out of range: {v!r}")
        self.obs_dim, self.n_actions = int(obs_dim), int(n_actions)
        self.hidden = tuple(int(h) for h in hidden)
        self.lr, self.gamma = float(lr), float(gamma)
        self.target_update, self.max_grad_norm = int(target_update), float(max_grad_norm)
        self.n_obs_states, self.action_start = int(n_obs_states), int(action_start)
        self.seed, self.device = int(seed), torch.device(device)
        gen = torch.Generator().manual_seed(self.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))
            self.q = _mlp(torch, self.obs_dim, self.hidden, self.n_actions).to(self.device)
        self.target = _mlp(torch, self.obs_dim, self.hidden, self.n_actions).to(self.device)
        self.target.load_state_dict(self.q.state_dict())
        self.optimizer = torch.optim.Adam(self.q.parameters(), lr=self.lr)
        self.updates = 0
        self._rng = np.random.default_rng(self.seed)
        self._torch = torch

    @classmethod
    def from_spaces(cls, observation_space: gym.Space, action_space: gym.Space, **kw: Any) -> DQNAgent:
        """An agent sized for these spaces (``Box`` or ``Discrete`` observations,
        ``Discrete`` actions)."""
        if not isinstance(action_space, gym.spaces.Discrete):
            raise AgentConfigError(f"action space {action_space} is not Discrete; {cls.__name__} "
                                   "needs Discrete actions")
        if isinstance(observation_space, gym.spaces.Discrete):
            kw.setdefault("n_obs_states", int(observation_space.n))
            dim = int(observation_space.n)
        elif isinstance(observation_space, gym.spaces.Box):
            dim = int(np.prod(observation_space.shape))
        else:
            raise AgentConfigError(f"observation space {observation_space} is neither Box nor "
                                   f"Discrete; {cls.__name__} needs one of them")
        return cls(dim, int(action_space.n), action_start=int(action_space.start), **kw)

    def check_spaces(self, observation_space: Any, action_space: Any) -> None:
        ok_act = isinstance(action_space, gym.spaces.Discrete) and int(action_space.n) == self.n_actions
        if self.n_obs_states:
            ok_obs = isinstance(observation_space, gym.spaces.Discrete) and int(observation_space.n) == self.n_obs_states
        else:
            ok_obs = isinstance(observation_space, gym.spaces.Box) and int(np.prod(observation_space.shape)) == self.obs_dim
        if not (ok_act and ok_obs):
            raise AgentConfigError(f"{type(self).__name__} is sized for {self.obs_dim} observation inputs and "
                                   f"{self.n_actions} actions; got {observation_space} and {action_space}")

    # -- tensors ----------------------------------------------------------------------------
    def _obs(self, obs: Any):
        torch = self._torch
        x = torch.as_tensor(np.asarray(obs), device=self.device)
        if self.n_obs_states:
            return torch.nn.functional.one_hot(x.long().reshape(-1), self.n_obs_states).float()
        return x.float().reshape(-1, self.obs_dim)

    # -- acting -----------------------------------------------------------------------------
    def act(self, obs: Any, *, epsilon: float = 0.0, rng: np.random.Generator | None = None) -> Any:
        """Greedy action (or a batch of them for a batch of observations), random with
        probability ``epsilon``."""
        torch = self._torch
        a = np.asarray(obs)
        single = a.ndim == (0 if self.n_obs_states else 1) and (self.n_obs_states or a.size == self.obs_dim)
        with torch.no_grad():
            greedy = self.q(self._obs(a)).argmax(dim=1).cpu().numpy() + self.action_start
        if epsilon > 0:
            r = rng if rng is not None else self._rng
            explore = r.random(len(greedy)) < epsilon
            greedy = np.where(explore, r.integers(0, self.n_actions, len(greedy)) + self.action_start, greedy)
        return int(greedy[0]) if single else greedy

    def q_values(self, obs: Any) -> np.ndarray:
        """Q(obs, .) as float32, one row per observation."""
        with self._torch.no_grad():
            return self.q(self._obs(obs)).cpu().numpy()

    # -- learning ---------------------------------------------------------------------------
    def _extra_loss(self, q_all, a):  # noqa: ARG002 - DQN adds nothing
        return None

    def update(self, batch: Mapping[str, np.ndarray]) -> float:
        """One gradient step on ``batch``; returns the loss. Leaves ``batch["td_error"]``."""
        torch = self._torch
        try:
            s, a, r, s2, term = (batch[k] for k in ("obs", "action", "reward", "next_obs", "terminated"))
        except KeyError as e:
            raise AgentConfigError(f"{type(self).__name__}.update needs the field {e.args[0]!r}") from None
        a_t = torch.as_tensor(np.asarray(a), device=self.device).long().reshape(-1) - self.action_start
        if len(a_t) and (int(a_t.min()) < 0 or int(a_t.max()) >= self.n_actions):
            raise AgentConfigError(f"{type(self).__name__}: actions must be in {self.action_start}.."
                                   f"{self.action_start + self.n_actions - 1}")
        r_t = torch.as_tensor(np.asarray(r), device=self.device).float().reshape(-1)
        done = torch.as_tensor(np.asarray(term), device=self.device).bool().reshape(-1)
        disc = batch.get("discount")
        disc_t = (torch.full_like(r_t, self.gamma) if disc is None
                  else torch.as_tensor(np.asarray(disc), device=self.device).float().reshape(-1))
        with torch.no_grad():
            nxt = self.target(self._obs(s2)).max(dim=1).values
            target = r_t + torch.where(done, torch.zeros_like(nxt), disc_t * nxt)
        q_all = self.q(self._obs(s))
        q_sa = q_all.gather(1, a_t[:, None]).squeeze(1)
        td = q_sa - target
        per_row = torch.nn.functional.smooth_l1_loss(q_sa, target, reduction="none")
        w = batch.get("weight")
        loss = (per_row * torch.as_tensor(np.asarray(w), device=self.device).float()).mean() if w is not None \
            else per_row.mean()
        extra = self._extra_loss(q_all, a_t)
        if extra is not None:
            loss = loss + extra
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.q.parameters(), self.max_grad_norm)
        self.optimizer.step()
        self.updates += 1
        if self.updates % self.target_update == 0:
            self.target.load_state_dict(self.q.state_dict())
        if isinstance(batch, dict):
            batch["td_error"] = td.detach().abs().cpu().numpy()
        return float(loss.detach())

    # -- state ------------------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        return {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "hidden": list(self.hidden),
                "lr": self.lr, "gamma": self.gamma, "target_update": self.target_update,
                "max_grad_norm": self.max_grad_norm, "n_obs_states": self.n_obs_states,
                "action_start": self.action_start, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        """Settings, both networks, the optimizer and the update count, as numpy arrays and
        JSON values (what the online trainer's run state holds)."""
        def arrays(sd):
            return {k: v.detach().cpu().numpy().copy() for k, v in sd.items()}

        opt = self.optimizer.state_dict()
        # top-level plain values are the settings (a resumed online run must share them);
        # what changes while learning sits in nested entries
        settings = {k: v for k, v in self.config().items() if not isinstance(v, list)}
        return {"format_version": FORMAT_VERSION, "type": type(self).__name__, **settings,
                "config": self.config(),
                "q": arrays(self.q.state_dict()), "target": arrays(self.target.state_dict()),
                "optimizer": {"param_groups": json.loads(json.dumps(opt["param_groups"])),
                              "state": {str(k): {n: (t.detach().cpu().numpy().copy() if hasattr(t, "detach")
                                                     else t) for n, t in v.items()}
                                        for k, v in opt["state"].items()}},
                "progress": {"updates": self.updates}, "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        torch = self._torch
        if state.get("type") != type(self).__name__:
            raise AgentConfigError(f"state is of a {state.get('type')!r}, not a {type(self).__name__}")
        mine = self.config()
        if {k: state["config"][k] for k in mine if k != "seed"} != {k: v for k, v in mine.items() if k != "seed"}:
            raise AgentConfigError(f"{type(self).__name__}: saved settings {state['config']} differ from {mine}")

        def tensors(d):
            return {k: torch.as_tensor(np.asarray(v)) for k, v in d.items()}

        self.q.load_state_dict(tensors(state["q"]))
        self.target.load_state_dict(tensors(state["target"]))
        opt = state["optimizer"]
        self.optimizer.load_state_dict({
            "param_groups": opt["param_groups"],
            "state": {int(k): {n: (torch.as_tensor(np.asarray(t)) if isinstance(t, np.ndarray) else t)
                               for n, t in v.items()} for k, v in opt["state"].items()}})
        self.updates = int(state["progress"]["updates"])
        self._rng.bit_generator.state = state["rng"]

    def hyperparameters(self) -> dict[str, Any]:
        return self.config()

    def check_save_path(self, path: str | os.PathLike[str]) -> None:
        super().check_save_path(path)
        if Path(path).suffix.lower() != ".pt":
            raise AgentConfigError(f"{str(path)!r}: a saved deep agent is one .pt file; name it e.g. "
                                   f"{Path(path).with_suffix('.pt').name!r}")

    def save(self, path: str | os.PathLike[str]) -> None:
        """One ``.pt`` file (tensors and plain values only), written atomically."""
        self.check_save_path(path)
        torch = self._torch
        st = self.state_dict()

        def to_t(v):
            if isinstance(v, np.ndarray):
                return torch.from_numpy(v)
            if isinstance(v, dict):
                return {k: to_t(x) for k, x in v.items()}
            return v

        p = Path(path)
        tmp = p.with_name(p.name + ".tmp")
        torch.save({"format": self.saved_format, **to_t({k: v for k, v in st.items() if k != "rng"}),
                    "rng": json.dumps(st["rng"])}, tmp)
        os.replace(tmp, p)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> DQNAgent:
        """Read a file written by :meth:`save` (``torch.load(weights_only=True)``: tensors
        and plain values, never code)."""
        torch = require_torch()
        p = Path(path)
        try:
            doc = torch.load(p, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise AgentConfigError(f"{p}: no such saved agent") from None
        except Exception as e:  # (a damaged or foreign file: say so, do not trace back)
            raise AgentConfigError(f"{p}: not a saved replaystore deep agent ({type(e).__name__}: {e})") from None
        kind = doc.get("type") if isinstance(doc, dict) else None
        klass = {c.__name__: c for c in (DQNAgent, DiscreteCQLAgent)}.get(kind)
        if klass is None or (cls is not DQNAgent and klass is not cls):
            raise AgentConfigError(f"{p}: saved agent is a {kind!r}, not a {cls.__name__}")
        try:
            agent = klass(**doc["config"])

            def to_np(v):
                if hasattr(v, "numpy"):
                    return v.numpy()
                if isinstance(v, dict):
                    return {k: to_np(x) for k, x in v.items()}
                return v

            state = {k: to_np(v) for k, v in doc.items() if k not in ("format", "rng")}
            state["rng"] = json.loads(doc["rng"])
            agent.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise AgentConfigError(f"{p}: saved agent is damaged ({type(e).__name__}: {e})") from None
        return agent

    def describe(self) -> dict[str, Any]:
        return {"kind": "agent", "type": type(self).__name__, **self.config(), "updates": self.updates}


class DiscreteCQLAgent(DQNAgent, saved_format="replaystore.DiscreteCQLAgent", suffixes=()):
    """:class:`DQNAgent` plus the conservative penalty ``cql_alpha * E[logsumexp_a Q(s, a) -
    Q(s, a_data)]`` (discrete CQL, for offline data)."""

    kind = "cql"

    def __init__(self, obs_dim: int, n_actions: int, *, cql_alpha: float = 1.0, **kw: Any) -> None:
        if not cql_alpha >= 0:
            raise AgentConfigError(f"DiscreteCQLAgent: cql_alpha must be >= 0, got {cql_alpha!r}")
        self.cql_alpha = float(cql_alpha)
        super().__init__(obs_dim, n_actions, **kw)

    def _extra_loss(self, q_all, a):
        torch = self._torch
        data_q = q_all.gather(1, a[:, None]).squeeze(1)
        return self.cql_alpha * (torch.logsumexp(q_all, dim=1) - data_q).mean()

    def config(self) -> dict[str, Any]:
        return {**super().config(), "cql_alpha": self.cql_alpha}
