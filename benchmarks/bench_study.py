"""A whole lottery-ticket study through the library vs a bare-JAX script, interleaved.

    python benchmarks/bench_study.py [--rounds 3] [--iterations 5000] [--levels 3]

The study: LeNet-300-100 on Fashion-MNIST with the paper's recipe (Adam 1.2e-3,
batch 60, layer-wise 20%/10%), 1 seed, ``--levels`` levels, ticket + random
reinit (7 runs for 3 levels), ``--iterations`` per run, evaluation every 100.
Each round runs ``lth run`` (a fresh workdir, so nothing is resumed; its report
included) and ``benchmarks/bare_study.py`` (same recipe and early-stop rule) as
separate processes, one after the other; the ratio is taken within each round
(the machine is shared and noisy). Then the library's start-up: the time from
``lth run`` to its first training step (imports, data, compilation), with the
persistent compilation cache cold and warm; and the projection to the paper's
full recipe (5 seeds, 16 levels, 50,000 iterations, ticket + reinit).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def lth_args(workdir: str, iterations: int, levels: int, seeds: int = 1) -> list[str]:
  return [
    sys.executable, '-c', 'import sys; from lth_jax.cli import main; sys.exit(main())', 'run',
    '--config=experiments/lenet300.py:paper', '--config.data.name=fashion_mnist',
    f'--config.num_steps={iterations}', f'--config.num_levels={levels}',
    f'--config.num_seeds={seeds}', f'--workdir={workdir}',
  ]  # fmt: skip


def timed(args: list[str], env=None) -> tuple[float, str]:
  start = time.perf_counter()
  out = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env)
  seconds = time.perf_counter() - start
  if out.returncode:
    raise SystemExit(f'{args[:3]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}')
  return seconds, out.stdout + out.stderr


def startup(env) -> tuple[float, float]:
  """Seconds from `lth run` to its first training step, and the whole tiny run."""
  with tempfile.TemporaryDirectory() as workdir:
    began = time.time()
    seconds, text = timed(lth_args(workdir, 100, 0), env)
    first = re.search(r'unix time ([\d.]+)', text)
    return (float(first.group(1)) - began if first else float('nan')), seconds


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--iterations', type=int, default=5000)
  parser.add_argument('--levels', type=int, default=3)
  args = parser.parse_args()
  runs = 1 + 2 * args.levels
  print(
    f'study: {runs} runs x {args.iterations} iterations, evaluation every 100; load {os.getloadavg()}'
  )
  lib, bare = [], []
  for r in range(args.rounds):
    with tempfile.TemporaryDirectory() as workdir:
      lib.append(timed(lth_args(workdir, args.iterations, args.levels))[0])
    bare.append(timed([sys.executable, str(HERE / 'bare_study.py'), f'--iterations={args.iterations}',
                       f'--levels={args.levels}'])[0])  # fmt: skip
    print(f'round {r + 1}: lth run {lib[-1]:.1f} s, bare script {bare[-1]:.1f} s, '
          f'ratio {lib[-1] / bare[-1]:.2f}', flush=True)  # fmt: skip
  ratios = [a / b for a, b in zip(lib, bare)]
  print(f'median: lth run {statistics.median(lib):.1f} s, bare {statistics.median(bare):.1f} s, '
        f'ratio {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f})')  # fmt: skip

  with tempfile.TemporaryDirectory() as cache:
    env = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': cache}
    cold = startup(env)
    warm = startup(env)
  print(
    f'start-up to the first training step: {cold[0]:.1f} s with a cold compilation cache, '
    f'{warm[0]:.1f} s warm (whole 100-iteration run: {cold[1]:.1f} s / {warm[1]:.1f} s)'
  )

  per_run = (statistics.median(lib) - warm[1]) / runs  # Less the fixed start-up and report.
  paper_runs = 5 * (1 + 2 * 16)
  projected = paper_runs * per_run * 50_000 / args.iterations
  print(
    f'paper recipe on Fashion-MNIST (5 seeds x 33 runs x 50,000 iterations): projected '
    f'{projected / 60:.0f} min at {1000 * per_run / args.iterations:.2f} ms per iteration '
    f'(evaluation included)'
  )


if __name__ == '__main__':
  main()
