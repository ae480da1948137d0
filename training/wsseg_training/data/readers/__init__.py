"""Readers that turn source datasets and recordings into scene records (one module per source)."""
