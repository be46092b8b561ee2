#!/usr/bin/env bash
# The main job on the embedded defaults, from a fresh clone: set-up, sample library,
# embedded Prefect stack, then every flow through its deployment. Prints where to look.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
exec speednet demo "$@"
