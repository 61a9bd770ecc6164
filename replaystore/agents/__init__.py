"""Agents trained from stored transitions, and exact solvers to grade them.

:class:`Agent` (``base.py``) is the interface the trainer uses; :class:`QLearningAgent`
(``qlearning.py``) is the tabular learner, saved as in ``qtable_files.py``;
:class:`DQNAgent` and :class:`DiscreteCQLAgent` (``dqn.py``, the ``torch`` extra) are deep; ``exact.py``
solves small MDPs exactly. Importing this package registers the agents' saved-policy
loaders (:func:`replaystore.policy.load_policy`). Nothing here knows about stores or
samplers: agents see batches of arrays.

>>> from replaystore.agents import QLearningAgent, policy_value_gap
>>> QLearningAgent(4, 2).greedy_policy().shape
(4,)
"""

from replaystore.agents.base import Agent
from replaystore.agents.dqn import DiscreteCQLAgent, DQNAgent
from replaystore.agents.exact import (
    initial_state_distribution,
    policy_evaluation,
    policy_value_gap,
    transition_matrices,
    value_iteration,
)
from replaystore.agents.qlearning import ALPHA_SCHEDULES, AgentConfigError, QLearningAgent


def load(path):
    """Any saved agent (tabular ``.npz``, deep ``.pt``), by its format: ``agents.load("cp-dqn.pt")``."""
    from replaystore.policy import load_policy

    return load_policy(path)

__all__ = [
    "Agent",
    "QLearningAgent",
    "DQNAgent",
    "DiscreteCQLAgent",
    "load",
    "AgentConfigError",
    "ALPHA_SCHEDULES",
    "value_iteration",
    "policy_evaluation",
    "policy_value_gap",
    "initial_state_distribution",
    "transition_matrices",
]
