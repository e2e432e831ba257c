"""Transfer of tickets between tasks: class subsets, and the smoke variant end to end."""

from pathlib import Path

import numpy as np
import pytest

from lth_jax import data
from lth_jax.analyses import transfer as transfer_lib
from lth_jax.study import results


def test_select_classes_relabels_in_the_given_order(fashion_mnist):
  picked = data.select_classes(fashion_mnist, (7, 2))
  assert picked.num_classes == 2
  for x_all, y_all, x, y in [
    (fashion_mnist.train_x, fashion_mnist.train_y, picked.train_x, picked.train_y),
    (fashion_mnist.test_x, fashion_mnist.test_y, picked.test_x, picked.test_y),
  ]:
    keep = (y_all == 7) | (y_all == 2)
    assert np.array_equal(x, x_all[keep])
    assert np.array_equal(y, np.where(y_all[keep] == 7, 0, 1))
  with pytest.raises(data.DataError, match='classes'):
    data.select_classes(fashion_mnist, (3, 3))


def test_transfer_smoke_end_to_end(transfer_smoke):
  from lth_jax.analyses import ticket

  source, rows = transfer_smoke
  assert [r['source_level'] for r in rows] == [1]
  for r, level in zip(rows, (1,), strict=True):
    header = ticket.read(source / 'tickets' / f'level_{level}' / 'seed_0.npz')[0]
    assert r['weights_remaining'] == pytest.approx(header['weights_remaining'])
    assert header['data']['classes'] == [0, 1, 2, 3, 4]
    target = next(source.parent.glob(f'transfer-smoke-source-level{level}-*'))
    summary = {results.run_key(s)[1:]: s for s in results.read_rows(target / 'summary.csv')}
    acc = {k: 100 * float(s['test_accuracy_at_early_stop']) for k, s in summary.items()}
    assert r['ticket_minus_reinit'] == pytest.approx(acc[1, 'ticket'] - acc[1, 'reinit'])
    assert r['ticket_minus_random_prune'] == pytest.approx(
      acc[1, 'ticket'] - acc[1, 'random_prune']
    )
    assert r['ticket_minus_dense'] == pytest.approx(acc[1, 'ticket'] - acc[0, 'ticket'])
  assert (source / 'transfer.csv').exists()
  assert '| remaining |' in transfer_lib.table(rows)


def test_variants_are_valid_configs():
  from experiments import transfer
  from lth_jax.study import config

  for variant in transfer.LEVELS:
    c = transfer.get_config(variant)
    config.validate(c)
    config.validate(transfer_lib.target_config(c, Path('source'), transfer.LEVELS[variant][0]))
  source = transfer.get_config('fmnist_04_to_59')
  target = transfer_lib.target_config(source, Path('source'), 5)
  assert target.data.classes == (5, 6, 7, 8, 9) and target.num_levels == 1
  with pytest.raises(ValueError, match='unknown variant'):
    transfer.get_config('nope')
