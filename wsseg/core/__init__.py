"""Shared preprocessing and data contracts (numpy only): voxels, kernel maps, classes, bundles."""
