# Source me: `source scripts/env.sh`. Activates .venv and points `prefect` at the
# embedded stack (start it with `speednet stack start`), so that e.g.
#   prefect deployment run 'ingest-library/default' --watch
# works from any shell.
_speednet_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
source "$_speednet_root/.venv/bin/activate"
eval "$(speednet stack env)"
unset _speednet_root
