#!/usr/bin/env bash
# Check the application answers: run the configured health command in the application directory.
# Parameters come only from the environment: BYOI_ROOT, BYOI_APP_DIR, BYOI_HEALTH_COMMAND.
set -euo pipefail
root="${BYOI_ROOT:-}"
cd "${root%/}${BYOI_APP_DIR:?BYOI_APP_DIR is required}"
bash -euo pipefail -c "${BYOI_HEALTH_COMMAND:?BYOI_HEALTH_COMMAND is required}"
echo "health: ok"
