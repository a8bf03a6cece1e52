"""The batch-size study: describe -> plan -> run -> store -> report."""

from .experiment import (Experiment, ExperimentError, available_presets, load_experiment, plan,
                         preset_path, trial_id)
from .report import Summary, markdown, summarize, write_report
from .run import run_trial
from .sweep import estimate, sweep

__all__ = ["Experiment", "ExperimentError", "load_experiment", "plan", "trial_id", "preset_path",
           "available_presets", "run_trial", "sweep", "estimate", "summarize", "write_report",
           "markdown", "Summary"]
