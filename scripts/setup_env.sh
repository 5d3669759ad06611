#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv from requirements.txt.
# A stamp of the requirements' hash makes a second run instant; a changed file reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_book_assets.sh   # MathJax for offline pages, chromium for the browser test
PY=${PYTHON:-python3}
stamp=.venv/.requirements.sha1
want=$(sha1sum requirements.txt pyproject.toml | sha1sum | cut -c1-40)
if [ -x .venv/bin/python ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  echo "setup_env: .venv is up to date"
  exit 0
fi
echo "setup_env: creating .venv (torch 2.11 trio, hear21passt, sentence-transformers, jupyter-book; ~3 GB, a few minutes)"
"$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt
echo "$want" > "$stamp"
.venv/bin/python -c "import torch, torchaudio, hear21passt, sentence_transformers, retrieval_lib; print('setup_env: ok, torch', torch.__version__)"
