"""Writes docs/reference/config.md from the config schema, so the page cannot drift from the code.

    .venv/bin/python scripts/gen_config_reference.py          # (re)writes the page
    .venv/bin/python scripts/gen_config_reference.py --check  # exit 1 when the page is stale

Every key of ``lth_jax.study.schema.SCHEMA``: its type and default (``default_config()``), what
the schema allows, whether it is part of a run directory's name (``lth_jax.study.config``'s
groups of keys left out of ``study_hash``), and its description (``DESCRIPTIONS`` below, the
one thing written by hand: a key without one, or a description of no key, is an error).
tests/test_docs.py checks that the committed page is this script's output.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path

from lth_jax.study import config as config_lib
from lth_jax.study import schema as schema_lib

PAGE = Path(__file__).resolve().parents[1] / 'docs' / 'reference' / 'config.md'
COMMAND = '.venv/bin/python scripts/gen_config_reference.py'

SECTIONS = {
  '': 'The study',
  'model': 'The model: `model.*`',
  'data': 'The data: `data.*`',
  'optimizer': 'The optimizer: `optimizer.*`',
  'pruning': 'Pruning: `pruning.*`',
  'at_init': 'Masks chosen early: `at_init.*`',
  'early_bird': 'When the ticket appears: `early_bird.*`',
  'dst': 'Sparse from the start: `dst.*`',
  'lmc': 'Linear mode connectivity: `lmc.*`',
  'transfer': 'Tickets that travel: `transfer.*`',
}

DESCRIPTIONS = {
  # The study.
  'name': "The study's name: its run directory is `<workdir>/<name>-<hash of the config>`.",
  'seed': 'The first seed; a study runs seeds `seed` … `seed + num_seeds − 1` '
  '(`seed + num_seeds` ≤ 2³²).',
  'num_seeds': 'How many seeds (independent replicates: θ0, data order, controls).',
  'arms': 'The arms of every pruned level, comma-separated; `ticket` always runs '
  '([Concepts](../concepts.md#arms-and-controls), [Adding an arm](../guides/adding-an-arm.md)).',
  'parallel': '`true`: all runs of a level (seeds × arms) as one vmapped, jitted program; '
  '`false`: one after another; `threads`: one program per run, up to one per CPU core at a '
  'time; `auto`: vmapped on GPUs/TPUs, threads on a multi-core CPU '
  '([Many seeds and devices](../guides/seeds-and-devices.md)).',
  'max_parallel_runs': 'At most this many runs per vmapped call (0: as many as fit in the '
  "device's memory).",
  'batch_size': 'Training batch size (at most the training examples left after validation).',
  'num_steps': 'T, the iterations of every training run.',
  'eval_every': 'Validation (early stopping) every this many iterations.',
  'eval_batch_size': 'Batch size of evaluation.',
  'train_eval_size': 'Training examples (the first ones) evaluated for the curves and the '
  'train/test gap (0: none).',
  'curve_every': 'The test split and the training subset evaluated every this many iterations '
  'for the curves (0: only at the end); a multiple of `eval_every`.',
  'rewind_step': "k: pruned levels restart from the dense run's state at iteration k "
  '(0: θ0); before `num_steps`.',
  'rewind_optimizer': '`restore`: the optimizer state at k is rewound with the weights; '
  '`fresh`: a fresh optimizer state (as OpenLTH).',
  'num_levels': 'Pruning levels after the dense network (level 0).',
  'retrain': 'How each pruned level retrains (and what the next level prunes from): `rewind` '
  '(IMP), `lr_rewind` (θT ⊙ masks, the schedule replayed from k), `finetune` (θT ⊙ masks at '
  'the final learning rate) ([Retraining modes](../studies/retraining.md)); `rewind` when a '
  'ticket is imported.',
  'checkpoint_every': 'Mid-level checkpoints every this many iterations (0: none); a multiple '
  'of `eval_every`.',
  'checkpoint_seconds': 'Mid-level checkpoints every this many wall-clock seconds (0: never).',
  'ticket': 'A ticket file (`lth export`) whose masks level 1 takes and whose values every '
  'pruned level starts from; `{seed}` in it is replaced by each seed '
  '([Tickets that travel](../guides/tickets-that-travel.md)).',
  # model.*
  'model.name': 'The network, from the model zoo (`lth_jax.core.models.MODELS`).',
  'model.init': "How the prunable weights are drawn: `default` (the zoo's Glorot) or a "
  'scheme of `lth_jax.core.models.INITS`; the reinit control draws from the same scheme.',
  'model.dropout': 'Dropout rate after each hidden dense layer of the Conv nets (0: none).',
  # data.*
  'data.name': 'The data set.',
  'data.validation_size': 'The last training examples held out for validation (early '
  'stopping); fewer than the training examples.',
  'data.train_size': 'The first N training examples after the validation split (0: all).',
  'data.test_size': 'The first N test examples (0: all).',
  'data.data_dir': "Where prepared data sets live ('': tensorflow-datasets' default).",
  'data.manual_dir': 'A directory holding the raw files, for offline use.',
  'data.download': 'Download raw files not found locally (checksums verified).',
  'data.augment': 'Random crop (pad 4) and horizontal flip of each training batch.',
  'data.standardize': 'true: per-channel mean/std of the training split; false: pixels in [0, 1].',
  'data.verify_checksums': "Check raw files against the data set's known checksums; false "
  'for a deliberately modified copy (its results get their own run directory).',
  'data.classes': 'Keep only these classes, relabelled 0..n−1 (`()`: all).',
  # optimizer.*
  'optimizer.name': 'The optimizer (`sgd` with `optimizer.momentum`).',
  'optimizer.learning_rate': 'The base learning rate.',
  'optimizer.momentum': "SGD's momentum (0: none; unused by Adam).",
  'optimizer.weight_decay': 'Weight decay added to the gradient before the optimizer '
  '(`optax.add_decayed_weights`; 0: none).',
  'optimizer.warmup_steps': 'Linear warmup from 0 to the base rate over this many iterations.',
  'optimizer.milestones': 'Iterations at which the learning rate is multiplied by '
  '`optimizer.decay_factor`.',
  'optimizer.decay_factor': 'The factor applied at each milestone.',
  # pruning.*
  'pruning.strategy': '`layerwise`: each layer loses its own rate of its survivors; `global`: '
  'one ranking over the pruned hidden layers.',
  'pruning.iterative': 'true: each level prunes the survivors of the last (IMP); false: '
  "one-shot from the dense network to each level's sparsity.",
  'pruning.rate_conv': "Layer-wise: fraction of a conv layer's surviving weights pruned per level.",
  'pruning.rate_dense': "Layer-wise: fraction of a hidden dense layer's surviving weights "
  'pruned per level.',
  'pruning.rate_output': "Layer-wise: fraction of the output layer's surviving weights pruned "
  'per level.',
  'pruning.rate': 'Global: fraction of the surviving weights pruned per level (positive when '
  'pruning globally).',
  'pruning.prune_output': 'Global: the output layer joins the global ranking.',
  'pruning.output_layer': 'Which layer is the output layer: `auto` (the layer named '
  "`output`), a layer name, or '' (none).",
  'pruning.criterion': 'What IMP ranks the survivors by (Zhou et al.): `large_final` |θT|, '
  '`magnitude_increase` |θT| − |θ0|, `movement` |θT − θ0|, `large_init_large_final`.',
  'pruning.granularity': 'What a round removes: `weight`, or whole units (`unit` / `channel`: a '
  "dense layer's neurons, a conv layer's output channels, with their incoming and outgoing "
  'weights), or `refill` (an unstructured step, then the units holding the most survivors made '
  'dense again, Chen et al. 2022) (`lth_jax.core.structured`).',
  'pruning.n_m': 'N:M sparsity: at most N of every M consecutive input weights of each pruned '
  "kernel kept (granularity `weight` only; '': none).",
  # at_init.*
  'at_init.samples_per_class': 'SNIP and GraSP score one class-balanced batch of this many '
  'training examples per class.',
  'at_init.supermask_steps': "Iterations of training a supermask's scores.",
  'at_init.supermask_lr': "Adam's learning rate for the supermask's scores.",
  'at_init.bn_mode': "Batch norm while SNIP and GraSP score: `train` (the batch's "
  'statistics) or `eval` (the running statistics).',
  # early_bird.*
  'early_bird.window': 'The newest mask is compared with the last this many masks.',
  'early_bird.epsilon': 'The early-bird step: the first evaluation where the newest mask is '
  'within this normalised Hamming distance of each mask of the window.',
  # dst.*
  'dst.update_every': '`set` and `rigl` move their masks every this many iterations.',
  'dst.drop_fraction': "Fraction of each layer's kept weights dropped (and regrown) at an "
  'update, cosine-decayed to 0 at `dst.end_step`.',
  'dst.end_step': 'The last iteration of mask updates (0: 75% of T); at most `num_steps`.',
  'dst.distribution': "Layer densities of `static`, `set` and `rigl`: `ticket` (the ticket's "
  'per-layer counts), `erk` (Erdős–Rényi-kernel) or `uniform`.',
  # lmc.*
  'lmc.rewind_steps': 'The rewind steps k of a sweep: a study per k, each with its pairs '
  '(`()`: an ordinary study); each before `num_steps`.',
  'lmc.levels': 'The levels whose networks are paired (0: the dense network); at most '
  '`num_levels`.',
  'lmc.num_alphas': 'Points on the path between the two copies, endpoints included.',
  'lmc.bn_recompute': 'Re-estimate batch statistics of every network on the path (50 training '
  'batches); false: the interpolated statistics.',
  'lmc.pairs': "Measure the instability of this study's networks at `lmc.levels` (a stage "
  'after IMP).',
  'lmc.successive': "Add the stage of consecutive levels: the path from level L's network "
  "projected on level L+1's mask to level L+1's network.",
  # transfer.*
  'transfer.levels': 'The source levels whose tickets are trained on the target task (`()`: '
  'no transfer); at most `num_levels`.',
  'transfer.data': "The target data set ('': the source's).",
  'transfer.classes': "The target's classes (`()`: all).",
  'transfer.arms': 'The arms the target studies run at level 1.',
}

IDENTITY_GROUPS = (
  (config_lib.EXECUTION_KEYS, 'no: how it runs'),
  (config_lib.GROWTH_KEYS, 'no: a study grows'),
  (config_lib.LOCATION_KEYS, 'no: where files are'),
  (config_lib.STAGE_KEYS, 'no: a later stage'),
)

HEADER = """\
# Configuration reference

<!-- Generated by {command} from lth_jax.study.schema and lth_jax.study.config: do not edit. -->

Every key can be overridden on the command line (ml_collections conventions), and every key is
validated before any work starts (`lth_jax.study.schema.validate`: one `lth: error:` line naming
the key, the value and what is allowed). A recipe (`experiments/<module>.py:<variant>`) starts
from these defaults (LeNet-300-100 on MNIST as in the paper) and changes a few:

```bash
lth run --config=experiments/lenet300.py:paper --config.data.name=fashion_mnist \\
        --config.num_seeds=3 --config.arms=ticket,reinit,random_prune --workdir=runs
```

**Part of a run's identity.** A run directory is named `<name>-<hash>`, the hash of the config
less the keys that do not change its results (`lth_jax.study.config.study_hash`):

- *yes*: any change makes a new run directory;
- *when changed*: keys added after run directories existed, or that only add behaviour: left
  out of the hash at their default, so the directories of configs that do not use them keep
  their names; any other value is hashed;
- *no: how it runs* (`parallel`, `max_parallel_runs`, `checkpoint_every`, `checkpoint_seconds`):
  they never change results, so a study can be resumed with other settings;
- *no: a study grows* (`num_levels`, `num_seeds`, `arms`): rerunning with more trains only the
  new runs ([Growing and comparing studies](../guides/growing-and-comparing.md));
- *no: where files are* (`data.data_dir`, `data.download`);
- *no: a later stage* (`lmc.pairs`, `lmc.successive`, `transfer.*`): stages whose tables sit
  beside the study's own, so asking for them reuses the study's finished runs.

Relations between keys are checked too: `rewind_step` < `num_steps`; `checkpoint_every` and
`curve_every` are multiples of `eval_every`; the sizes fit the data set; `lmc.rewind_steps` <
`num_steps`; `lmc.levels` and `transfer.levels` ≤ `num_levels`; `dst.end_step` ≤ `num_steps`.
"""


def identity(key: str) -> str:
  """Whether ``key`` is part of a run directory's name, as ``study_hash`` decides."""
  for keys, text in IDENTITY_GROUPS:
    if key in keys:
      return text
  return 'when changed' if key in config_lib.DEFAULT_ONLY else 'yes'


def type_name(key: str, value) -> str:
  if key == 'parallel':
    return 'str or bool'
  if isinstance(value, tuple):
    return 'tuple of int'
  return type(value).__name__


def literal(value) -> str:
  return repr(value).replace('|', '\\|')


def allowed(key: str, schema: Mapping) -> str:
  text = schema[key][1]
  return (text() if callable(text) else text).replace('|', '\\|').replace('<', '&lt;')


def check_keys(schema: Mapping, defaults: Mapping, descriptions: Mapping) -> None:
  """Every key of the schema has a default and a description, and every description a key."""
  problems = []
  for what, keys in (('a default', defaults), ('a description', descriptions)):
    missing = [k for k in schema if k not in keys]
    if missing:
      problems.append(f'without {what}: {", ".join(missing)}')
  extra = [k for k in descriptions if k not in schema]
  if extra:
    problems.append(f'described but not in the schema: {", ".join(extra)}')
  if problems:
    raise SystemExit(
      f'config keys {"; ".join(problems)} (write each in DESCRIPTIONS of scripts/'
      f'gen_config_reference.py, then run {COMMAND}).'
    )


def render(schema: Mapping | None = None, descriptions: Mapping | None = None) -> str:
  """The page: a table per section of keys, in the schema's order."""
  schema = schema_lib.SCHEMA if schema is None else schema
  descriptions = DESCRIPTIONS if descriptions is None else descriptions
  defaults = schema_lib.flatten(config_lib.default_config().to_dict())
  check_keys(schema, defaults, descriptions)
  lines = [HEADER.format(command=COMMAND)]
  for section, title in SECTIONS.items():
    keys = [k for k in schema if (k.split('.')[0] if '.' in k else '') == section]
    if not keys:
      continue
    lines += [f'## {title}', '', '| key | type | default | allowed | identity | description |']
    lines.append('|---|---|---|---|---|---|')
    for key in keys:
      value = defaults[key]
      lines.append(
        f'| `{key}` | {type_name(key, value)} | `{literal(value)}` | {allowed(key, schema)} '
        f'| {identity(key)} | {descriptions[key]} |'
      )
    lines.append('')
  unsectioned = [k for k in schema if k.split('.')[0] not in SECTIONS and '.' in k]
  if unsectioned:
    raise SystemExit(f'config keys in no section of SECTIONS: {", ".join(unsectioned)}.')
  return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--check', action='store_true', help='exit 1 when the page is stale')
  args = parser.parse_args(argv)
  page = render()
  if args.check:
    if not PAGE.exists() or PAGE.read_text() != page:
      print(f"{PAGE} is not the schema's: run {COMMAND}", file=sys.stderr)
      return 1
    return 0
  PAGE.write_text(page)
  print(f'wrote {PAGE}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
