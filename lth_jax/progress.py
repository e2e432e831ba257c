"""Progress bars for long studies (tqdm): the whole study and the current run.

Bars show iterations/s and ETA; tqdm hides them when stderr is not a terminal.
"""

from __future__ import annotations

from tqdm.auto import tqdm


class TqdmProgress:
  """An ``imp.Progress`` drawing an overall bar and one bar per run (or group)."""

  def __init__(self, total_steps: int, done_steps: int = 0, disable: bool | None = None):
    self.disable = disable
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
    self.overall.update(steps)
    if self.bar is not None:
      self.bar.update(steps)
      shown = {'val_loss': 'val_loss', 'test_accuracy': 'test_acc'}
      postfix = {label: f'{metrics[m]:.4f}' for m, label in shown.items() if m in metrics}
      if postfix:
        self.bar.set_postfix(postfix)

  def close(self) -> None:
    if self.bar is not None:
      self.bar.close()
      self.bar = None

  def finish(self) -> None:
    self.close()
    self.overall.close()
