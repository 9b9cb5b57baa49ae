"""The calibrated performance model: kernels, collectives, transformer step time and memory."""

from simulator.perf.api import (
           TrainingPrediction,
           default_layout,
           job_comm_fraction,
           job_runtime,
           predict_training,
)
from simulator.perf.layout import Layout, bubble_fraction, make_layout
from simulator.perf.model import ModelSpec
from simulator.perf.profile import Profile, load_profile

__all__ = ["Layout", "ModelSpec", "Profile", "TrainingPrediction", "bubble_fraction", "default_layout",
           "job_comm_fraction", "job_runtime", "load_profile", "make_layout", "predict_training"]
