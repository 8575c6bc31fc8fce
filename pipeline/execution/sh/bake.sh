#!/usr/bin/env bash
# Bake: run the app's bake script on the builder, in its root directory.
# Parameters come only from the environment:
#   BYOI_ROOT, BYOI_BAKE_COMMAND, BYOI_APP, BYOI_ENV, BYOI_DECLARED_<KEY> (declared versions)
set -euo pipefail
root="${BYOI_ROOT:-}"
cd "${root:-/}"
echo "bake: ${BYOI_APP:-app} (${BYOI_ENV:-env})"
bash -euo pipefail -c "${BYOI_BAKE_COMMAND:?BYOI_BAKE_COMMAND is required}"
