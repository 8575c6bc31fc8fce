#!/usr/bin/env bash
# Check the application answers: run the configured health command in the application directory.
# Parameters come only from the environment: BYOI_ROOT, BYOI_APP_DIR, BYOI_HEALTH_COMMAND, and
# for the command BYOI_APP, BYOI_ENV, BYOI_RUN, BYOI_RELEASE, BYOI_SERVER (as deploy has them).
set -euo pipefail
root="${BYOI_ROOT:-}"
cd "${root%/}${BYOI_APP_DIR:?BYOI_APP_DIR is required}"
bash -euo pipefail -c "${BYOI_HEALTH_COMMAND:?BYOI_HEALTH_COMMAND is required}"
echo "health: ok"
