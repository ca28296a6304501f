#!/usr/bin/env bash
# PyMongo's own tests (the sdist of the pinned pymongo) against the MongoDB wire double:
# the in-scope selection of tests/conformance/selection.toml, a table of the results, and a
# non-zero exit when an in-scope test fails. Also run by scripts/test.sh; `make conformance`.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
echo "== conformance (PyMongo's own tests against the MongoDB wire double)"
PYTHONPATH="$PWD" .venv/bin/python -m tests.conformance "$@"
