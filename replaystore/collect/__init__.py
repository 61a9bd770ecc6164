"""Collect transitions from a gymnasium environment into a store.

:func:`collect` runs ``env_id`` (one env, or ``num_envs`` in a synchronous vector env)
with a policy and appends every transition to the store at ``path``, creating it from
the env's spaces when it does not exist yet:

>>> import tempfile
>>> import replaystore as rs
>>> path = tempfile.mkdtemp() + "/lake.zarr"
>>> stats = collect("FrozenLake-v1", path, steps=200, seed=0,
...                 env_kwargs={"is_slippery": False})
>>> stats.steps, stats.episodes > 0
(200, True)
>>> with rs.open(path) as store:
...     len(store), store.env_info["id"], store.info["collections"][0]["seed"]
(200, 'FrozenLake-v1', 0)

Policies. ``policy`` is one of

* ``"random"``: uniform actions from the env's action space (seeded);
* any :class:`~replaystore.policy.Policy` (e.g. a
  :class:`~replaystore.agents.QLearningAgent`: epsilon-greedy on its table), or the path
  of a saved one, read with :func:`~replaystore.policy.load_policy` (e.g. the ``q.npz``
  :meth:`QLearningAgent.save` writes, or an older ``q.npy``). The policy acts with
  ``epsilon`` itself and must accept the env's spaces (:meth:`Policy.check_spaces`: a
  Q-table needs ``Discrete`` spaces of its shape), else :class:`SpaceError`;
* any callable ``policy(obs) -> action``. By default it gets **one** observation (in the
  env's own format, e.g. a dict for a ``Dict`` space) and returns one action; with
  several envs it is called once per env, in env order. Pass ``batched_policy=True`` to
  call it once per vector step with the batch of observations (the vector env's format,
  leading axis ``num_envs``) and have it return a batch of ``num_envs`` actions. With
  ``epsilon > 0`` each env's action is replaced, with probability ``epsilon``, by a
  uniform random action.

Randomness. The first reset seeds the envs with ``seed, seed+1, ..., seed+num_envs-1``
(later resets continue each env's own generator). The policy's randomness (random
actions, epsilon draws) comes from streams derived from ``seed`` with
``numpy.random.SeedSequence([seed, tag])``, so it is independent of the env's own
generator (seeding the action space with ``seed`` itself would replay the env's random
stream of env 0). The same call into two fresh stores writes identical arrays.

Vector envs and autoreset. The vector env runs in gymnasium's ``NEXT_STEP`` autoreset
mode (set explicitly): after a step that ends an episode in env ``i``, the next vector
step resets env ``i`` and returns its first observation with reward 0. That reset step is
not a transition and is not recorded; env ``i``'s next recorded transition starts from
the reset observation with ``step == 0`` and a fresh episode id. So no row ever pairs the
last observation of one episode with the first of the next. ``terminated`` and
``truncated`` are recorded as the env reports them.

Episode ids are reserved with :meth:`ReplayStore.new_episode_ids`, so they are unique in
the store across envs and across runs appending to the same store. Rows of different
envs interleave in the store; ``episode`` and ``step`` tell them apart.

Layout: ``config.py`` (argument checks, seeds, the vector env, :class:`CollectStats`),
``policies.py`` (what chooses the actions), ``block.py`` (rows gathered for one
``extend``), ``collector.py`` (:class:`Collector` and :func:`collect`).

``steps=N`` records exactly ``N`` transitions (counted over all envs); the episodes
running when it stops are kept unfinished (their last rows are neither terminated nor
truncated). ``episodes=N`` records exactly ``N`` complete episodes: rows are held back
until their episode ends, and rows of episodes still running at the end are dropped.
"""

from ..errors import EnvError
from .collector import Collector, collect
from .config import BLOCK_STEPS, CollectorConfigError, CollectStats
from .distributed import ShardedCollectStats, collect_sharded

__all__ = ["collect", "Collector", "CollectStats", "EnvError", "CollectorConfigError", "BLOCK_STEPS",
           "collect_sharded", "ShardedCollectStats"]
