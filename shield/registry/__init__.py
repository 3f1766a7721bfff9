"""Model registry: a versioned JSON catalog and `ensure_available`, which fetches and verifies models."""

from shield.registry.catalog import Catalog, CatalogEntry, ModelFile, load_catalog, save_catalog
from shield.registry.fetch import ensure_available, verify_local

__all__ = ["Catalog", "CatalogEntry", "ModelFile", "ensure_available", "load_catalog", "save_catalog", "verify_local"]
