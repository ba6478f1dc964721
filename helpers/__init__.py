"""Helpers for the drywall QA segmentation course: data, model, training, evaluation."""

__version__ = "0.1.0"
