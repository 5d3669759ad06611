#!/usr/bin/env bash
# What the book's offline HTML and its browser test need beyond Python packages, installed from
# package registries only (called by scripts/setup_env.sh; a second run is instant):
#
# 1. MathJax 3 for offline math. The PyPI package django-static-mathjax ships MathJax's `es5`
#    build (version 3.2.2); its files are unpacked into _offline/mathjax (gitignored), which the
#    book build copies to _build/html/_static/mathjax (_config.yml: mathjax_path). Without it the
#    pages load MathJax from a CDN and, offline, every formula shows as raw \( ... \).
# 2. Debian's `chromium`, the headless browser that tests/test_browser.py drives through
#    playwright (no browser download: playwright is pointed at /usr/bin/chromium). Installed
#    with apt-get when missing and running as root; otherwise the browser test is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

MATHJAX_PACKAGE="django-static-mathjax==3.2.2.1"
MATHJAX_WHEEL_SHA256=05ad109fd9e5d9d380c76389689b7f523e9ccb7f7a85c1eb962c7564eac7601d
dest=_offline/mathjax

if [ "$(cat "$dest/.package" 2>/dev/null)" != "$MATHJAX_PACKAGE" ] || [ ! -f "$dest/tex-chtml.js" ]; then
  echo "setup_book_assets: MathJax 3 from $MATHJAX_PACKAGE into $dest"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download --quiet --no-deps --dest "$tmp" "$MATHJAX_PACKAGE"
  wheel=$(ls "$tmp"/*.whl)
  echo "$MATHJAX_WHEEL_SHA256  $wheel" | sha256sum --check --quiet
  python3 - "$wheel" "$tmp/es5" <<'EOF'
import sys, zipfile
from pathlib import Path
wheel, out = sys.argv[1], Path(sys.argv[2])
prefix = "mathjax/static/mathjax/es5/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(z.read(name))
EOF
  echo "$MATHJAX_PACKAGE" > "$tmp/es5/.package"
  mkdir -p _offline
  rm -rf "$dest"
  mv "$tmp/es5" "$dest"   # whole folder at once: an interrupted run leaves no half copy
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup_book_assets: installing Debian's chromium for the browser test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup_book_assets: no chromium and not root: tests/test_browser.py will be skipped"
  fi
fi
echo "setup_book_assets: ok"
