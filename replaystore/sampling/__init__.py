"""Which rows to read: uniform, epoch, class-balanced, weighted, prioritized and sequence samplers."""

from .balanced import BalancedSampler
from .base import Sampler
from .permutation import FeistelPermutation
from .prioritized import PrioritizedSampler
from .sequence import SequenceSampler
from .uniform import UniformSampler
from .weighted import WeightedSampler

__all__ = ["Sampler", "UniformSampler", "BalancedSampler", "WeightedSampler", "SequenceSampler",
           "PrioritizedSampler", "FeistelPermutation"]
