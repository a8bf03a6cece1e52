"""The training substrate: fit(), its configuration, callbacks, and training dynamics."""

from .callbacks import Callback, Checkpoint, ProgressBar, TrainState, load_checkpoint
from .config import ConfigError, TrainConfig
from .loop import (FitResult, evaluate, fit, lr_lambda, make_optimizer, param_groups, resolve_device,
                   timed_calls)

__all__ = ["fit", "evaluate", "FitResult", "TrainConfig", "ConfigError", "Callback", "ProgressBar",
           "Checkpoint", "TrainState", "load_checkpoint", "lr_lambda", "param_groups",
           "resolve_device", "timed_calls", "make_optimizer"]
