"""Which rows to read: uniform, epoch, class-balanced and weighted samplers."""

from .balanced import BalancedSampler
from .base import Sampler
from .permutation import FeistelPermutation
from .uniform import UniformSampler
from .weighted import WeightedSampler

__all__ = ["Sampler", "UniformSampler", "BalancedSampler", "WeightedSampler", "FeistelPermutation"]
