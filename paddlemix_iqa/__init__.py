"""paddlemix_iqa: Paddle-native image-quality ops for PaddleMIX DataCopilot.

Importing the package is light: Paddle, models and weights load on first use.
"""

from ._version import __version__
from .io import ImageLoadError, load_image
from .ops import build_op, iqa_arniqa, iqa_brisque, iqa_filter, iqa_tagger, list_ops
from .registry import register_op, register_scorer
from .scorers import Scorer, get_scorer, list_scorers

__all__ = [
    "ImageLoadError",
    "Scorer",
    "__version__",
    "build_op",
    "get_scorer",
    "iqa_arniqa",
    "iqa_brisque",
    "iqa_filter",
    "iqa_tagger",
    "list_ops",
    "list_scorers",
    "load_image",
    "register_op",
    "register_scorer",
]
