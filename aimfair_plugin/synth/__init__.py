"""Synthetic-data providers for the AIM-Fair mitigator, the prompts that drive them, and FADM for tables."""

from ._base import (
    ArrayProvider,
    SyntheticDataProvider,
    balanced_group_counts,
    biased_group_counts,
    group_cells,
    majority_group,
    synthetic_set_size,
)
from ._diffusers import DiffusersProvider
from ._fadm import FairTabularDiffusion
from ._folder import ImageFolderProvider
from ._prompts import ContextualPromptBuilder, PlainPromptBuilder, load_prompts, save_prompts
from ._rendered import RenderedDigitsProvider
from ._tabular import TabularEncoder
from ._tiny import build_tiny_text_to_image_pipeline

__all__ = [
    "ArrayProvider",
    "ContextualPromptBuilder",
    "DiffusersProvider",
    "FairTabularDiffusion",
    "ImageFolderProvider",
    "PlainPromptBuilder",
    "RenderedDigitsProvider",
    "SyntheticDataProvider",
    "TabularEncoder",
    "balanced_group_counts",
    "biased_group_counts",
    "build_tiny_text_to_image_pipeline",
    "group_cells",
    "load_prompts",
    "majority_group",
    "save_prompts",
    "synthetic_set_size",
]
