"""The documentation site: built in strict mode, its configuration reference generated from the
schema, its code blocks run (or tested elsewhere, word for word), its figures small and traced to
the commands that made them."""

import functools
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lth_jax.study import config as config_lib
from lth_jax.study import schema as schema_lib

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / 'docs'
README = REPO / 'README.md'
PAGES = sorted(DOCS.rglob('*.md'))


def generator():
  spec = importlib.util.spec_from_file_location(
    'gen_config_reference', REPO / 'scripts' / 'gen_config_reference.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


# ---------------------------------------------------------------------------- the site
def test_the_site_builds_in_strict_mode(tmp_path):
  exe = shutil.which('mkdocs', path=str(Path(sys.executable).parent)) or shutil.which('mkdocs')
  if exe is None:
    pytest.skip('mkdocs is not installed (pip install -e .[docs])')
  out = subprocess.run(
    [exe, 'build', '--strict', '--site-dir', str(tmp_path / 'site')],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
    env={**os.environ, 'NO_MKDOCS_2_WARNING': '1'},
  )
  assert out.returncode == 0, out.stdout + out.stderr
  assert 'WARNING' not in out.stderr, out.stderr
  assert (tmp_path / 'site' / 'reference' / 'config.html').exists()


def test_strict_mode_fails_on_what_a_reader_would_miss():
  yaml = pytest.importorskip('yaml')
  config = yaml.safe_load((REPO / 'mkdocs.yml').read_text())
  assert config['strict'] is True
  validation = config['validation']
  for key in ('omitted_files', 'not_found', 'absolute_links'):  # Every page in the nav.
    assert validation['nav'][key] == 'warn', key
  for key in ('not_found', 'anchors', 'absolute_links', 'unrecognized_links'):
    assert validation['links'][key] == 'warn', key


def test_readme_links_resolve():
  for target in re.findall(r'\]\(([^)#\s]+)(?:#[^)]*)?\)', README.read_text()):
    if not target.startswith(('http://', 'https://')):
      assert (REPO / target).exists(), target


# ---------------------------------------------------------------------------- the configuration
def test_the_configuration_reference_is_the_schemas():
  """The committed page is what the generator writes (in a fresh process: arms that other tests
  register are not the package's)."""
  out = subprocess.run(
    [sys.executable, 'scripts/gen_config_reference.py', '--check'],
    cwd=REPO,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 0, out.stdout + out.stderr


def test_every_key_has_a_row():
  page = (DOCS / 'reference' / 'config.md').read_text()
  rows = set(re.findall(r'^\| `([\w.]+)` \|', page, re.M))
  assert rows == set(schema_lib.SCHEMA)


def test_a_key_without_a_description_is_an_error():
  gen = generator()
  schema = {**schema_lib.SCHEMA, 'pruning.new_key': (lambda v: True, 'anything')}
  with pytest.raises(SystemExit, match='pruning.new_key'):
    gen.render(schema=schema)
  descriptions = {k: v for k, v in gen.DESCRIPTIONS.items() if k != 'rewind_step'}
  with pytest.raises(SystemExit, match='without a description: rewind_step'):
    gen.render(descriptions=descriptions)
  with pytest.raises(SystemExit, match='described but not in the schema: gone'):
    gen.render(descriptions={**gen.DESCRIPTIONS, 'gone': 'a key no more'})


class _Config:
  def __init__(self, flat):
    self.flat = flat

  def to_dict(self):
    return self.flat


def test_the_identity_column_is_what_names_a_run_directory():
  """Each key's column against study_hash: a changed value, and the key absent (an old config)."""
  gen = generator()
  flat = schema_lib.flatten(config_lib.default_config().to_dict())
  base = config_lib.study_hash(_Config(flat))
  for key in schema_lib.SCHEMA:
    changed = config_lib.study_hash(_Config({**flat, key: 'another value'})) != base
    absent = config_lib.study_hash(_Config({k: v for k, v in flat.items() if k != key})) != base
    expected = {(True, True): 'yes', (True, False): 'when changed', (False, False): 'no'}
    assert gen.identity(key).split(':')[0] == expected[changed, absent], key


# ---------------------------------------------------------------------------- code blocks
MARKED = re.compile(r'<!-- (runnable|tested)(?:: ([\w/.]+))? -->\n```python\n(.*?)```', re.S)


def marked_blocks():
  return [(page, *m.groups()) for page in PAGES for m in MARKED.finditer(page.read_text())]


def test_the_guides_have_marked_blocks():
  kinds = {(kind, bool(where)) for _, kind, where, _ in marked_blocks()}
  assert kinds == {('runnable', False), ('runnable', True), ('tested', True)}


RUNNABLE = [
  (page, code) for page, kind, where, code in marked_blocks() if kind == 'runnable' and not where
]


@pytest.mark.parametrize(
  'page, code',
  RUNNABLE,
  ids=[f'{p.relative_to(DOCS).as_posix()}-{i}' for i, (p, _) in enumerate(RUNNABLE)],
)
def test_a_runnable_block_runs(page, code, capsys):
  exec(compile(code, str(page), 'exec'), {})  # Its own asserts say what it must give.


def test_a_block_run_or_tested_elsewhere_is_there_word_for_word():
  """``runnable: FILE``: FILE runs the page's block; ``tested: FILE``: FILE holds the block's
  code (imports aside), line by line in order."""
  for page, kind, where, code in marked_blocks():
    if not where:
      continue
    test = (REPO / where).read_text()
    if kind == 'runnable':
      assert page.name in test, (page, where)
      continue
    lines = [line.strip() for line in test.splitlines()]
    at = 0
    for line in code.splitlines():
      if line.strip() and not line.startswith(('import ', 'from ')):
        assert line.strip() in lines[at:], (page, line)
        at = lines.index(line.strip(), at) + 1


# ---------------------------------------------------------------------------- figures
IMAGE = re.compile(r'^!\[[^\]]*\]\(([^)]+\.png)\)\n\n((?:.+\n)+)', re.M)
RUN_DIR = re.compile(r'`([a-z][\w-]*)-([0-9a-f]{10})`')
COMMAND = re.compile(
  r'lth run --config=experiments/(\w+)\.py(?::([\w-]+))?((?:\s*\\?\s+--config\.[\w.]+=[^\s`]+)*)'
)
OVERRIDE = re.compile(r'--config\.([\w.]+)=([^\s`]+)')


def figures():
  for page in [README, *PAGES]:
    for m in IMAGE.finditer(page.read_text()):
      yield page, (page.parent / m.group(1)).resolve(), m.group(2)


def test_every_figure_is_small_and_shown():
  images = sorted(DOCS.rglob('*.png'))
  shown = {image for _, image, _ in figures()}
  assert set(images) <= shown, 'figures no page shows'
  assert all(image.exists() for image in shown)
  assert all(image.stat().st_size < 150_000 for image in images)
  assert sum(image.stat().st_size for image in images) < 3_000_000


def test_every_figure_names_the_command_and_run_that_made_it():
  """Under each figure: the command, the run directory it names (checked against the recipe's
  config as it is now: the command still makes that directory) and the date of the file."""
  for page, image, caption in figures():
    assert '*Provenance:' in caption and re.search(r'dated 20\d\d-\d\d-\d\d', caption), image
    runs = RUN_DIR.findall(caption)
    commands = COMMAND.findall(caption) or COMMAND.findall(page.read_text())
    assert runs and commands, image
    made = set()
    for module, variant, overrides in commands:
      recipe = importlib.import_module(f'experiments.{module}')
      config = recipe.get_config(variant) if variant else recipe.get_config()
      for key, value in OVERRIDE.findall(overrides):  # --config.key=value, as the command line.
        *parents, leaf = key.split('.')
        node = functools.reduce(getattr, parents, config)
        kind = type(getattr(node, leaf))
        setattr(node, leaf, value == 'true' if kind is bool else kind(value))
      made.add((config.name, config_lib.study_hash(config)))
    assert set(runs) <= made, (image, runs, made)


# ---------------------------------------------------------------------------- one text, one place
def table_after(text: str, heading: str) -> str:
  section = text[text.index(heading) :]
  return re.search(r'^\| level \|.*?\n\n', section, re.S | re.M).group(0)


def test_the_main_jobs_table_is_the_same_everywhere():
  pages = {
    README: '## Two commands',
    DOCS / 'getting-started.md': '## What the main job gives',
    DOCS / 'studies' / 'lenet.md': '## The main job',
  }
  tables = {table_after(page.read_text(), heading) for page, heading in pages.items()}
  assert len(tables) == 1


def test_the_command_line_in_readme_is_the_references():
  def block(path):
    return re.search(r'```\n(lth run .*?)```', path.read_text(), re.S).group(1)

  assert block(README) == block(DOCS / 'reference' / 'cli.md')
