"""The training substrate: fit(), its configuration, callbacks, and training dynamics."""

from .callbacks import (Callback, Checkpoint, DivergenceGuard, EarlyRejection, ProgressBar, StabilityCheck,
                        TrainState, load_checkpoint, stability_ratio)
from .config import ConfigError, TrainConfig
from .loop import (FitResult, evaluate, fit, lr_lambda, make_optimizer, param_groups, resolve_device,
                   timed_calls, torch_threads)

__all__ = ["fit", "evaluate", "FitResult", "TrainConfig", "ConfigError", "Callback", "ProgressBar",
           "Checkpoint", "TrainState", "load_checkpoint", "lr_lambda", "param_groups",
           "resolve_device", "timed_calls", "make_optimizer", "DivergenceGuard", "EarlyRejection",
           "StabilityCheck", "stability_ratio", "torch_threads"]
