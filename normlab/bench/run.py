"""One trial of the batch-size study: :func:`normlab.train.trial.run_trial`, which every study can
use (nago's retraining does), re-exported here where the study's users import it."""

from __future__ import annotations

from ..train.trial import run_trial

__all__ = ["run_trial"]
