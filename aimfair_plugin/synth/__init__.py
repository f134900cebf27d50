"""Synthetic-data providers for the AIM-Fair mitigator, and the prompts that drive them."""

from ._base import ArrayProvider, SyntheticDataProvider, balanced_group_counts, biased_group_counts
from ._prompts import ContextualPromptBuilder, PlainPromptBuilder, load_prompts, save_prompts
from ._diffusers import DiffusersProvider
from ._folder import ImageFolderProvider
from ._rendered import RenderedDigitsProvider
from ._tiny import build_tiny_text_to_image_pipeline

__all__ = [
    "ArrayProvider",
    "ContextualPromptBuilder",
    "DiffusersProvider",
    "ImageFolderProvider",
    "PlainPromptBuilder",
    "RenderedDigitsProvider",
    "SyntheticDataProvider",
    "balanced_group_counts",
    "biased_group_counts",
    "build_tiny_text_to_image_pipeline",
    "load_prompts",
    "save_prompts",
]
