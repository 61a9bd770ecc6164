"""Online learning with experience replay: act, store, sample, update (issue 13).

``schedules.py`` (exploration schedules), ``loop.py`` (:class:`OnlineTrainer`, the loop
and its commits), ``runstate.py`` (durable run state next to the store), ``curves.py``
(learning curves and their CSV), ``learn.py`` (the whole ``replaystore learn`` job).

>>> from replaystore.online import LinearSchedule
>>> LinearSchedule(1.0, 0.0, fraction=0.5).value(25, 100)
0.5
"""

from .curves import CurveLog, Curves
from .learn import LearnReport, learn
from .loop import BalancedFactory, OnlineResult, OnlineTrainer, SamplerFactory, run_dir_of
from .runstate import RunDir
from .schedules import LinearSchedule, as_schedule

__all__ = ["OnlineTrainer", "OnlineResult", "LinearSchedule", "as_schedule", "learn", "LearnReport",
           "BalancedFactory", "SamplerFactory", "Curves", "CurveLog", "RunDir", "run_dir_of"]
