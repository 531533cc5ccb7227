#!/usr/bin/env bash
# make demo: the short side-by-side run for a newcomer (see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 tools/bench/bench.py --demo
