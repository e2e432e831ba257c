"""Report of one run directory: figures (PNG), tables and a summary as HTML and Markdown.

``write_report(run_dir)`` reads what the experiment loop wrote into a run
directory (``config.json``, ``summary.csv``, ``curves.csv``, ``layers.csv`` and
``checkpoints/``) and writes ``run_dir/report/index.html`` and
``run_dir/report/report.md``, with the PNG figures beside them. It works on
partial runs (missing levels, arms, files or checkpoints): a figure whose inputs
are missing is replaced by a note, never an exception. ``write_comparison``
(``compare``) overlays several run directories in one report (``lth compare``).

Diverged trainings (``diverged == 1``) are never averaged: they are counted in
the tables and left out of every mean, standard deviation and curve. Error bars
are the sample standard deviation (ddof=1) over seeds (``lth_jax.study.results.mean_std``).

Modules: ``analysis`` (tables as columns, statistics over seeds, the loaded
``Run``), ``masks`` (mask overlap and initial weights from checkpoints),
``figures``, ``document`` (``Doc``, rendered as HTML and Markdown),
``sections`` and ``weight_sections`` (one function per section), ``references``
(the paper's numbers, read from the recipes' ``PAPER`` dicts), ``write``,
``compare``.

Adding a section (e.g. for a CSV an analysis writes into the run directory)::

    def section_instability(run: Run, doc: Doc):
      doc.heading('Instability')
      table = run.table('instability.csv')   # {column: array}; {} when missing
      if not table:
        doc.note('instability.csv is missing: run the analysis first.')
        return
      path = run.out_dir / 'instability.png'  # figures.new_figure / figures.save
      ...
      doc.image(path.name, 'Figure. ...')
      doc.table(['Level', 'Instability'], rows, 'Table. ...')

and one line in ``write.SECTIONS``: ``('instability', section_instability)``
(or pass ``sections=[*SECTIONS, ...]`` to ``write_report``). Each section runs
guarded: an exception becomes a note in the report and the other sections are
still drawn. A section that has nothing to show says so with ``doc.note``.

Figures are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas) without
pyplot, so writing a report never touches the global backend or opens windows.
"""

from lth_jax.report.analysis import (
  ArmStats,
  Columns,
  Run,
  aggregate,
  layer_table,
  load_run,
  mean_curves,
  read_csv,
  select_curve_levels,
)
from lth_jax.report.compare import write_comparison
from lth_jax.report.document import Doc, pct_label
from lth_jax.report.figures import FIGURE_NAMES, arm_label
from lth_jax.report.masks import (
  Overlap,
  init_weight_data,
  jaccard,
  mask_overlap,
  mean_pairwise_jaccard,
  prunable_leaves,
  random_jaccard,
)
from lth_jax.report.write import SECTIONS, Section, run_section, write_report

__all__ = [
  'FIGURE_NAMES', 'arm_label', 'SECTIONS', 'ArmStats', 'Columns', 'Doc', 'Overlap', 'Run',
  'Section', 'aggregate', 'init_weight_data', 'jaccard', 'layer_table', 'load_run',
  'mask_overlap', 'mean_curves', 'mean_pairwise_jaccard', 'pct_label', 'prunable_leaves',
  'random_jaccard', 'read_csv', 'run_section', 'select_curve_levels', 'write_comparison',
  'write_report',
]  # fmt: skip
