"""paddlemix_iqa: Paddle-native image-quality ops for PaddleMIX DataCopilot.

Importing the package is light: Paddle, models and weights load on first use.
"""

from ._version import __version__
from .io import ImageLoadError, load_image
from .ops import iqa_arniqa, iqa_brisque, iqa_filter, iqa_tagger
from .scorers import Scorer, get_scorer, list_scorers, register_scorer

__all__ = [
    "ImageLoadError",
    "Scorer",
    "__version__",
    "get_scorer",
    "iqa_arniqa",
    "iqa_brisque",
    "iqa_filter",
    "iqa_tagger",
    "list_scorers",
    "load_image",
    "register_scorer",
]
