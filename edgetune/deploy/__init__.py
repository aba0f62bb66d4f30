"""Stage 7: the deployable bundle, its typed manifest, and the report."""
