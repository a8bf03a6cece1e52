"""The batch-size study: describe -> plan -> run (normlab.runtime) -> store -> report."""

from .experiment import (AXES, Experiment, ExperimentError, available_presets, check_plan,
                         load_experiment, plan, preset_path, safe_name)
from .report import Summary, markdown, summarize, write_report
from .run import run_trial
from .sweep import KIND, estimate, sweep

__all__ = ["Experiment", "ExperimentError", "load_experiment", "plan", "check_plan", "preset_path",
           "available_presets", "safe_name", "AXES", "run_trial", "sweep", "estimate", "KIND",
           "summarize", "write_report", "markdown", "Summary"]
