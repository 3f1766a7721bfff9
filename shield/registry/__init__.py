"""Model registry: a versioned JSON catalog and `ensure_available`, which fetches and verifies models."""

from llm_shield.registry.catalog import Catalog, CatalogEntry, ModelFile, load_catalog, save_catalog
from llm_shield.registry.fetch import ensure_available, verify_local

__all__ = ["Catalog", "CatalogEntry", "ModelFile", "ensure_available", "load_catalog", "save_catalog", "verify_local"]
