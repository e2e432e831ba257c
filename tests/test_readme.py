"""README's examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / 'README.md'


def python_block_after(heading: str) -> str:
  text = README.read_text()
  section = text[text.index(heading) :]
  return re.search(r'```python\n(.*?)```', section, re.S).group(1)


def test_your_own_model_example_runs(fashion_mnist_dir, monkeypatch, capsys):
  code = python_block_after('## Your own model')
  assert len([line for line in code.splitlines() if line.strip()]) <= 10
  monkeypatch.setenv(
    'TFDS_DATA_DIR', fashion_mnist_dir
  )  # The prepared copy, not ~/tensorflow_datasets.
  namespace = {}
  exec(compile(code, 'README.md', 'exec'), namespace)
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
