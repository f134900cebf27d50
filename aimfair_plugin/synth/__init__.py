"""Synthetic-data providers for the AIM-Fair mitigator."""

from ._base import ArrayProvider, SyntheticDataProvider, balanced_group_counts, biased_group_counts

__all__ = ["ArrayProvider", "SyntheticDataProvider", "balanced_group_counts", "biased_group_counts"]
