#!/usr/bin/env bash
# Remove what a clone must not inherit from the server it was imaged from.
# Parameters come only from the environment, never from text pasted into this script:
#   BYOI_ROOT         the server's root directory ("" on a real server)
#   BYOI_SCRUB_PATHS  absolute paths, one per line; globs such as ssh_host_* are expanded
set -euo pipefail
root="${BYOI_ROOT:-}"
root="${root%/}"
case "$root" in
  "" | /*) ;;
  *) echo "scrub: BYOI_ROOT must be absolute: $root" >&2; exit 2 ;;
esac
count=0
while IFS= read -r path; do
  [ -n "$path" ] || continue
  case "$path" in
    /*) ;;
    *) echo "scrub: refusing relative path: $path" >&2; exit 2 ;;
  esac
  case "$path" in
    *..* | *[[:space:]]*) echo "scrub: refusing unsafe path: $path" >&2; exit 2 ;;
  esac
  if [ -z "$root" ] && [ "$path" = "/" ]; then
    echo "scrub: refusing to scrub /" >&2; exit 2
  fi
  shopt -s nullglob dotglob
  # The root is quoted (taken literally); the path is not, so its globs expand.
  # shellcheck disable=SC2206
  matches=("$root"$path)
  shopt -u nullglob dotglob
  for match in "${matches[@]}"; do
    [ -e "$match" ] || [ -L "$match" ] || continue
    shown="${match#"$root"}"
    if [ "$shown" = "/etc/machine-id" ]; then
      # Emptied, not deleted: systemd writes a new id on the clone's first boot.
      : > "$match"
      echo "emptied $shown"
    else
      rm -rf -- "$match"
      echo "removed $shown"
    fi
    count=$((count + 1))
  done
done <<< "${BYOI_SCRUB_PATHS:-}"
echo "scrub: $count path(s) cleaned"
