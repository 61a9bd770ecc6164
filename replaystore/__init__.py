"""replaystore: a disk-backed experience-replay dataset store for reinforcement learning.

The data flow is collect -> store -> sample -> train -> agent::

    import replaystore as rs
    store = rs.create("buf.zarr", observation_space=env.observation_space,
                      action_space=env.action_space, capacity=1_000_000)
    store.extend(batch)
    sampler = rs.UniformSampler(store, batch_size=256, seed=0)
"""

from . import agents  # noqa: E402,F401  (registers the saved-policy loaders: policy.load_policy)
from .errors import *  # noqa: E402,F403
from .errors import __all__ as _errors_all  # noqa: E402
from .framebytes import FrameStackBytes, frame_stack_bytes  # noqa: E402
from .merge import merge  # noqa: E402
from .online import LinearSchedule, OnlineResult, OnlineTrainer  # noqa: E402
from .sampling import (  # noqa: E402
    BalancedSampler,
    PrioritizedSampler,
    Sampler,
    SequenceSampler,
    UniformSampler,
    WeightedSampler,
)
from .storage import (  # noqa: E402
    FORMAT_VERSION,
    Field,
    ReplayStore,
    Schema,
    ShardedDataset,
    ShardMismatchError,
    create,
    create_dataset,
    open,
    pack,
    unpack,
    verify,
)
from .version import __version__

__all__ = [
    "__version__",
    "create",
    "open",
    "ReplayStore",
    "ShardedDataset",
    "ShardMismatchError",
    "create_dataset",
    "Field",
    "Schema",
    "FORMAT_VERSION",
    "verify",
    "pack",
    "unpack",
    "merge",
    "Sampler",
    "UniformSampler",
    "BalancedSampler",
    "WeightedSampler",
    "SequenceSampler",
    "PrioritizedSampler",
    "frame_stack_bytes",
    "FrameStackBytes",
    "OnlineTrainer",
    "OnlineResult",
    "LinearSchedule",
    *_errors_all,
]
