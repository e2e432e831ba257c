"""README's and the guides' examples run as written.

README is short; its "Your own model" example lives in docs/guides/own-model.md, and runs here.
"""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / 'README.md'
OWN_MODEL = ROOT / 'docs' / 'guides' / 'own-model.md'


def python_block_after(heading: str, path: Path = OWN_MODEL) -> str:
  text = path.read_text()
  section = text[text.index(heading) :]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_your_own_model_example_runs(fashion_mnist_dir, monkeypatch, capsys):
  code = python_block_after('## Your own model')
  assert len([line for line in code.splitlines() if line.strip()]) <= 10
  monkeypatch.setenv(
    'TFDS_DATA_DIR', fashion_mnist_dir
  )  # The prepared copy, not ~/tensorflow_datasets.
  namespace = {}
  exec(compile(code, str(OWN_MODEL), 'exec'), namespace)
  printed = capsys.readouterr().out
  assert 'head/kernel' in printed and 'output' in printed  # The plan, printed first.
  summary = namespace['store'].summary
  assert [(r['level'], r['arm']) for r in summary] == [
    (0, 'ticket'),
    (1, 'ticket'),
    (1, 'reinit'),
    (2, 'ticket'),
    (2, 'reinit'),
  ]
  assert summary[0]['test_accuracy_at_early_stop'] > 0.75


def test_readme_is_short_and_gives_the_two_commands_ci_runs():
  text = README.read_text()
  assert len(text.splitlines()) <= 150
  ci = (ROOT / '.ci' / 'run').read_text().strip().splitlines()[-1]
  assert ci in text.splitlines()  # The tests' command, exactly as CI runs it.
  main_job = (
    'bash scripts/setup.sh && .venv/bin/lth run --config=experiments/lenet300.py --workdir=runs'
  )
  assert main_job in text.splitlines()
