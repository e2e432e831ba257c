"""Data sets as numpy arrays (``load``), and a study's data on the device (``inputs``).

datasets · inputs · tfds_builders · raw_files · checksums · download_probe.
"""

from lth_jax.data.datasets import DATASETS, Dataset, channel_stats, load, select_classes
from lth_jax.errors import DataError

__all__ = ['DATASETS', 'DataError', 'Dataset', 'channel_stats', 'load', 'select_classes']
