"""Feature extraction: named extractors, batched extraction and the on-disk feature cache."""

from oodml.features.cache import cache_paths, default_cache_dir
from oodml.features.extract import compute_features, get_features
from oodml.features.extractors import EXTRACTORS, Extractor, ExtractorSpec, load_extractor
from oodml.features.featureset import FeatureSet

__all__ = [
    "EXTRACTORS",
    "Extractor",
    "ExtractorSpec",
    "FeatureSet",
    "cache_paths",
    "compute_features",
    "default_cache_dir",
    "get_features",
    "load_extractor",
]
