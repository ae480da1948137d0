"""Datasets: the dataset directory format, readers, synthetic scenes, super-voxels."""
