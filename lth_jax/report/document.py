"""The report as a list of blocks (headings, prose, tables, images), rendered as HTML and Markdown.

Also the number formats every section shares (percent labels, mean ± std).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Doc:
  """Report content as blocks, rendered to both HTML and Markdown."""

  blocks: list[tuple] = field(default_factory=list)

  def heading(self, text: str, level: int = 2):
    self.blocks.append(('h', level, text))

  def para(self, text: str):
    self.blocks.append(('p', text))

  def note(self, text: str):
    self.blocks.append(('note', text))

  def items(self, items: Sequence[str]):
    self.blocks.append(('ul', list(items)))

  def table(self, headers: Sequence[str], rows: Sequence[Sequence], caption: str = ''):
    self.blocks.append(('table', list(headers), [[str(c) for c in r] for r in rows], caption))

  def image(self, filename: str, caption: str):
    self.blocks.append(('img', filename, caption))


_CSS = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}
th,td{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee} caption{caption-side:top;text-align:left;font-style:italic;padding:4px 0}
img{max-width:100%;border:1px solid #ddd} figure{margin:1em 0}
.note{background:#fff6d5;border-left:4px solid #e0b000;padding:.4em .8em}
"""


def _html_table(headers, rows, caption) -> str:
  e = html.escape
  head = ''.join(f'<th>{e(h)}</th>' for h in headers)
  body = ''.join('<tr>' + ''.join(f'<td>{e(c)}</td>' for c in r) + '</tr>\n' for r in rows)
  return f'<table><caption>{e(caption)}</caption><tr>{head}</tr>\n{body}</table>'


def _html_block(block: tuple) -> str:
  e = html.escape
  kind = block[0]
  if kind == 'h':
    return f'<h{block[1]}>{e(block[2])}</h{block[1]}>'
  if kind == 'p':
    return f'<p>{e(block[1])}</p>'
  if kind == 'note':
    return f'<p class="note">{e(block[1])}</p>'
  if kind == 'ul':
    return '<ul>' + ''.join(f'<li>{e(i)}</li>' for i in block[1]) + '</ul>'
  if kind == 'table':
    return _html_table(*block[1:])
  return (
    f'<figure><img src="{e(block[1])}" alt="{e(block[2])}">'
    f'<figcaption>{e(block[2])}</figcaption></figure>'
  )


def to_html(doc: Doc, title: str) -> str:
  head = (
    f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    f'\n<style>{_CSS}</style></head><body>'
  )
  return '\n'.join([head, *map(_html_block, doc.blocks), '</body></html>\n'])


def _cell(text) -> str:
  return str(text).replace('|', '\\|')


def _markdown_table(headers, rows, caption) -> str:
  lines = [f'*{caption}*', ''] if caption else []
  lines.append('| ' + ' | '.join(_cell(h) for h in headers) + ' |')
  lines.append('|' + '---|' * len(headers))
  lines.extend('| ' + ' | '.join(_cell(c) for c in r) + ' |' for r in rows)
  return '\n'.join(lines)


def _markdown_block(block: tuple) -> str:
  kind = block[0]
  if kind == 'h':
    return '#' * block[1] + ' ' + block[2]
  if kind == 'p':
    return block[1]
  if kind == 'note':
    return '> **Note:** ' + block[1]
  if kind == 'ul':
    return '\n'.join(f'- {i}' for i in block[1])
  if kind == 'table':
    return _markdown_table(*block[1:])
  return f'![{block[2]}]({block[1]})\n\n*{block[2]}*'


def to_markdown(doc: Doc) -> str:
  return '\n\n'.join(map(_markdown_block, doc.blocks)) + '\n'


# ----------------------------------------------------------------------------- number formats


def pct_label(fraction: float) -> str:
  """'100', '51.3', '7.0', '0.42': a weights-remaining fraction as a percentage label."""
  pct = 100.0 * fraction
  if pct >= 99.95:
    return '100'
  return f'{pct:.2f}' if pct < 1 else f'{pct:.1f}'


def pm(value: tuple[float, float], n: int, scale: float = 1.0, digits: int = 2) -> str:
  """'mean ± std' (scaled), the mean alone when ``n`` < 2, '—' when there is none."""
  mean, std = value
  if not math.isfinite(mean):
    return '—'
  if n < 2:
    return f'{scale * mean:.{digits}f}'
  return f'{scale * mean:.{digits}f} ± {scale * std:.{digits}f}'


def num(x: float, digits: int = 2, scale: float = 1.0) -> str:
  return f'{scale * x:.{digits}f}' if math.isfinite(x) else '—'
