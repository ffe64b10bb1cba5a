"""Paddle network definitions (imported on demand) and the weights locator."""

from .weights import ENV_HOME, WeightsNotFound, locate_weights, weights_home

__all__ = ["ENV_HOME", "WeightsNotFound", "locate_weights", "weights_home"]
