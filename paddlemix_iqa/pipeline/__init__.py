"""YAML pipelines: config schema, resumable runner, crash-safe outputs, HTML report, demo data."""

from .config import ConfigError, PipelineConfig, load_config, validate
from .runner import run_pipeline

__all__ = ["ConfigError", "PipelineConfig", "load_config", "run_pipeline", "validate"]
