"""mkdocs hooks (mkdocs.yml ``hooks:``): docstrings written for doctest and reST read as Markdown.

The package's docstrings hold bare ``>>>`` examples (run by ``pytest --doctest-modules``) and
reST's ``text::`` before an indented block. Markdown would read an example's ``x['a']['b']`` as
a link and print the ``::``; this fences each example as ``pycon`` and drops the second colon.
Nothing in the package changes.
"""

from __future__ import annotations

from markdown import Extension
from markdown.preprocessors import Preprocessor
from mkdocs.plugins import event_priority

FENCES = ('```', '~~~')


class DoctestFences(Preprocessor):
  """Fences every paragraph that starts with ``>>>`` at the left margin, outside code fences."""

  def run(self, lines: list[str]) -> list[str]:
    out: list[str] = []
    fence = None
    i = 0
    while i < len(lines):
      line = lines[i]
      stripped = line.lstrip()
      if stripped.startswith(FENCES):
        marker = stripped[:3]
        fence = None if fence == marker else (fence or marker)
      elif fence is None and line.startswith('>>>') and (not out or not out[-1].strip()):
        block = []
        while i < len(lines) and lines[i].strip():
          block.append(lines[i])
          i += 1
        out += ['```pycon', *block, '```']
        continue
      elif fence is None and line.rstrip().endswith('::') and not line.strip().startswith('::'):
        line = line.rstrip()[:-1]  # reST's literal-block marker: the indented block follows.
      out.append(line)
      i += 1
    return out


class DoctestExtension(Extension):
  def extendMarkdown(self, md):  # noqa: N802 (Markdown's name)
    md.preprocessors.register(DoctestFences(md), 'doctest_fences', 28)  # Before superfences (25).


@event_priority(100)  # Before mkdocstrings reads the extensions.
def on_config(config):
  config.markdown_extensions.append(DoctestExtension())
  return config
