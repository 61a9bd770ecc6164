"""Agents trained from stored transitions, and exact solvers to grade them.

>>> from replaystore.agents import QLearningAgent, policy_value_gap
>>> QLearningAgent(4, 2).greedy_policy().shape
(4,)
"""

from replaystore.agents.exact import (
    initial_state_distribution,
    policy_evaluation,
    policy_value_gap,
    transition_matrices,
    value_iteration,
)
from replaystore.agents.qlearning import ALPHA_SCHEDULES, AgentConfigError, QLearningAgent

__all__ = [
    "QLearningAgent",
    "AgentConfigError",
    "ALPHA_SCHEDULES",
    "value_iteration",
    "policy_evaluation",
    "policy_value_gap",
    "initial_state_distribution",
    "transition_matrices",
]
