#!/usr/bin/env bash
# Install the release: run the configured deploy command in the application directory.
# Parameters come only from the environment:
#   BYOI_ROOT, BYOI_APP_DIR, BYOI_DEPLOY_COMMAND, BYOI_APP, BYOI_ENV, BYOI_RUN, BYOI_RELEASE,
#   BYOI_SERVER
set -euo pipefail
root="${BYOI_ROOT:-}"
app_dir="${root%/}${BYOI_APP_DIR:?BYOI_APP_DIR is required}"
mkdir -p "$app_dir"
cd "$app_dir"
echo "deploy: release ${BYOI_RELEASE:-latest} of ${BYOI_APP:-app} (${BYOI_ENV:-env}) on ${BYOI_SERVER:-server}"
bash -euo pipefail -c "${BYOI_DEPLOY_COMMAND:?BYOI_DEPLOY_COMMAND is required}"
