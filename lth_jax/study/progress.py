"""Progress of a long study: bars on a terminal, plain lines in a batch job's log.

``for_output`` picks one: ``TqdmProgress`` (an overall bar and one per run, with
iterations/s and ETA) when stderr is a terminal, ``LogProgress`` otherwise
(nohup, cluster schedulers, CI): a line per finished run and a heartbeat at most
every minute, so a long run's log shows that it is alive and how far it is.
Both print when the first training step is done, and how long after start.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

from lth_jax.started import STARTED


class _FirstStep:
  """Says once when the first evaluation period of the session is done."""

  def __init__(self, log):
    self.log, self.said = log, False

  def __call__(self):
    if not self.said:
      now = time.time()
      self.log(f'first training step done {now - STARTED:.1f} s after start (unix time {now:.3f})')
      self.said = True


class TqdmProgress:
  """An overall bar and one bar per run (or group)."""

  def __init__(self, total_steps: int, done_steps: int = 0, disable: bool | None = None, log=None):
    self.disable = disable
    self.log = log or (lambda message: None)
    self.first = _FirstStep(self.log)
    self.overall = tqdm(
        total=total_steps, initial=done_steps, desc='study', unit='it', position=0,
        disable=disable, dynamic_ncols=True,
    )  # fmt: skip
    self.bar = None

  def start(self, description: str, total_steps: int) -> None:
    self.bar = tqdm(
        total=total_steps, desc=description, unit='it', position=1, leave=False,
        disable=self.disable, dynamic_ncols=True,
    )  # fmt: skip

  def advance(self, steps: int, metrics: dict[str, float]) -> None:
    self.first()
    self.overall.update(steps)
    if self.bar is not None:
      self.bar.update(steps)
      shown = {'val_loss': 'val_loss', 'test_accuracy': 'test_acc'}
      postfix = {label: f'{metrics[m]:.4f}' for m, label in shown.items() if m in metrics}
      if postfix:
        self.bar.set_postfix(postfix)

  def run_finished(self, row: dict, seconds: float) -> None:
    if row.get('collapsed_layers'):  # The bars say the rest; the level table follows at the end.
      self.log(collapse_note(row))

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None

  def finish(self) -> None:
    self.close()
    self.overall.close()


class LogProgress:
  """Plain lines: one per finished run, and a heartbeat at most every ``heartbeat`` seconds."""

  def __init__(self, total_steps: int, done_steps: int = 0, *, log=print, heartbeat: float = 60.0):
    self.log, self.heartbeat = log, heartbeat
    self.total, self.done = total_steps, done_steps
    self.first = _FirstStep(log)
    self.began = self.last = time.monotonic()
    self.description, self.run_total, self.run_done = '', 0, 0

  def start(self, description: str, total_steps: int) -> None:
    self.description, self.run_total, self.run_done = description, total_steps, 0

  def advance(self, steps: int, metrics: dict[str, float]) -> None:
    self.first()
    self.done += steps
    self.run_done += steps
    now = time.monotonic()
    if now - self.last >= self.heartbeat:
      self.last = now
      val = f', val loss {metrics["val_loss"]:.4f}' if 'val_loss' in metrics else ''
      self.log(
        f'{time.strftime("%H:%M:%S")} {self.description}: {self.run_done}/{self.run_total} it{val}; '
        f'study {100 * self.done / max(self.total, 1):.0f}% ({self.done}/{self.total} it)'
      )

  def run_finished(self, row: dict, seconds: float) -> None:
    self.last = time.monotonic()
    stop = row['early_stop_step'] if row['early_stop_step'] != '' else '—'  # '—': nothing trained.
    self.log(
      f'{time.strftime("%H:%M:%S")} done: seed {row["seed"]} level {row["level"]} {row["arm"]}, '
      f'{100 * float(row["weights_remaining"]):.1f}% remaining, early stop {stop}, '
      f'test acc {100 * float(row["test_accuracy_at_early_stop"]):.2f}%, {seconds:.1f} s'
      + (' (diverged)' if int(row['diverged']) else '')
    )
    if row.get('collapsed_layers'):
      self.log(collapse_note(row))

  def close(self) -> None:
    pass

  def finish(self) -> None:
    pass


def collapse_note(row: dict) -> str:
  """The log line of a run whose mask left a layer with no weight."""
  return (
    f'layer collapse: seed {row["seed"]} level {row["level"]} {row["arm"]} has no weight left '
    f'in {row["collapsed_layers"].replace(";", ", ")}'
  )


def for_output(total_steps: int, done_steps: int, *, show: bool | None, log=print):
  """Bars on a terminal (or when ``show``), log lines otherwise; none when ``show`` is False."""
  if show is False:
    return TqdmProgress(total_steps, done_steps, disable=True)
  if show or sys.stderr.isatty():
    return TqdmProgress(total_steps, done_steps, disable=False, log=log)
  return LogProgress(total_steps, done_steps, log=log)
