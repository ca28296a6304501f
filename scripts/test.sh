#!/usr/bin/env bash
# The one test command (README, `make test`, and CI through .ci/run): set up what is
# missing, run the static checks, then every suite, then the benchmarks in quick mode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
echo "== lint"
scripts/lint.sh
echo "== tests"
.venv/bin/python -m pytest -p no:cacheprovider "$@"
scripts/conformance.sh
if [ -f bench/__main__.py ]; then
    echo "== benchmarks (quick mode: proves they run, asserts nothing about speed)"
    .venv/bin/python -m bench --quick
fi
