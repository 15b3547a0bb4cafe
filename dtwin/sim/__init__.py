"""Simulators: the twins that dtwin's models learn and its estimators calibrate."""

from dtwin.sim import hh

__all__ = ["hh"]
