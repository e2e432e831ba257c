#!/usr/bin/env bash
# Sets up lth_jax on a fresh machine: Fashion-MNIST (Debian package) and a
# virtual environment in .venv with the package, its tests' and docs' tools and a Jupyter kernel.
# Safe to run again: what is already there is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  if command -v apt-get >/dev/null; then
    $sudo apt-get update -qq && $sudo apt-get install -y -qq dataset-fashion-mnist >/dev/null \
      || echo "setup: could not install dataset-fashion-mnist; MNIST and CIFAR-10 still download." >&2
  else
    echo "setup: no apt-get; put Fashion-MNIST's IDX files in a directory and pass --config.data.manual_dir." >&2
  fi
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[test,docs]'
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
echo "setup: ready (.venv/bin/lth, .venv/bin/python -m pytest)"
