"""``write_report``: every section of a run's report, each guarded, rendered to HTML and Markdown."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from lth_jax.report import early_bird, moving_masks, sections, weight_sections
from lth_jax.report.analysis import Run, config_value, load_run
from lth_jax.report.document import Doc, to_html, to_markdown
from lth_jax.study import stages, workdir

Section = Callable[[Run, Doc], None]

# IMP's sections, in order: (name, function(run, doc)). Add a section with one line here; a
# later stage brings its own (``Stage.sections``), drawn after these when its config wants it.
SECTIONS: list[tuple[str, Section]] = [
  ('header', sections.section_header),
  ('accuracy', sections.section_accuracy),
  ('training curves', sections.section_curves),
  ('generalization gap', sections.section_gap),
  ('layers', weight_sections.section_layers),
  ('initial weights', weight_sections.section_init),
  ('mask overlap', weight_sections.section_overlap),
  ('early-bird tickets', early_bird.section_early_bird),
  ('moving masks', moving_masks.section_moving_masks),
]


def sections_of(run_dir: Path) -> list[tuple[str, Section]]:
  """The sections of the stages the study's config wants (IMP's alone without a config)."""
  try:
    wanted = stages.wanted(workdir.load_config(run_dir))
  except Exception:  # No readable config: a directory made in Python, or a damaged one.
    return list(SECTIONS)
  chosen = list(SECTIONS) if any(s.name == 'imp' for s in wanted) else [SECTIONS[0]]
  return chosen + [section for stage in wanted for section in stage.sections]


def run_section(name: str, section: Section, run: Run, doc: Doc) -> bool:
  """Runs one section; a failure becomes a note, so the rest of the report is still written."""
  try:
    section(run, doc)
    return True
  except Exception as e:  # A broken section must not cost the other figures.
    logging.exception('report: section %s failed', name)
    doc.note(f'Section "{name}" could not be drawn: {type(e).__name__}: {e}')
    return False


def render(doc: Doc, out_dir: Path, title: str) -> Path:
  """Writes ``out_dir/report.md`` and ``out_dir/index.html``; returns the latter."""
  (out_dir / 'report.md').write_text(to_markdown(doc))
  index = out_dir / 'index.html'
  index.write_text(to_html(doc, title))
  return index


def write_report(
  run_dir: str | os.PathLike,
  *,
  curve_levels: Sequence[int] | None = None,
  sections: Sequence[tuple[str, Section]] | None = None,
) -> Path:
  """Writes ``run_dir/report/index.html`` and ``report.md`` (figures beside them).

  Args:
    run_dir: a finished or partially finished run directory.
    curve_levels: levels shown in the training-curve figure (default: up to four,
      including the paper's 51.3/21.1/7.0% remaining when present).
    sections: (name, function(run, doc)) pairs to draw instead of those of the
      study's stages (``SECTIONS`` for IMP, then each later stage's).

  Returns:
    The path of ``index.html``.
  """
  run = load_run(run_dir)
  run.curve_levels = curve_levels
  run.out_dir.mkdir(parents=True, exist_ok=True)
  for old in run.out_dir.glob('*.png'):  # A figure skipped now must not survive from before.
    old.unlink()
  doc = Doc()
  for name, section in sections_of(run.run_dir) if sections is None else sections:
    run_section(name, section, run, doc)
  return render(doc, run.out_dir, f'LTH report: {config_value(run.config, "name")}')
