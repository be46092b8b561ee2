#!/usr/bin/env bash
# Run the test suite, setting everything up first (virtualenv, packages). Extra
# arguments go to pytest, e.g. `bash scripts/test.sh -k ingest -x`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec python -m pytest -q -p no:cacheprovider "$@"
