"""Analyses that read a study's stored trees, as stages of its pipeline.

lmc (the pair and its path) · lmc_stage (the ``lmc`` and ``lmc sweep`` stages) ·
lmc_sections (their report sections) · ticket (export, load) · transfer (the
``transfer`` stage) · compact (dead units removed) · edge_trainer (numpy-only
training of a ticket on a small device). Importing this package registers its
stages (``lth_jax.study.stages``).
"""

from lth_jax.analyses import lmc_stage, successive, transfer  # noqa: F401 (registers the stages)
