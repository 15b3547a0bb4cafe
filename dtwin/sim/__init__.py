"""Simulators: the twins that dtwin's models learn and its estimators calibrate."""

from dtwin.sim import etdrk4, fhn, hh, imaging, ks, tanks

__all__ = ["etdrk4", "fhn", "hh", "imaging", "ks", "tanks"]
