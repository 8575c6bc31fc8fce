#!/usr/bin/env bash
# Measure versions: run each probe command and print one line per probe,
#   byoi-probe <key> <exit code> <first lines of its output, joined by US (\x1f)>
# Parameters come only from the environment:
#   BYOI_ROOT          the server's root directory ("" on a real server)
#   BYOI_PROBE_KEYS    the keys, separated by spaces
#   BYOI_PROBE_<KEY>   the command of each key (KEY in upper case)
set -uo pipefail
root="${BYOI_ROOT:-}"
root="${root%/}"
# On the local provider a server's own tools come first.
if [ -n "$root" ]; then
  PATH="$root/usr/local/sbin:$root/usr/local/bin:$root/usr/sbin:$root/usr/bin:$root/sbin:$root/bin:$PATH"
fi
export PATH BYOI_ROOT="$root"
for key in ${BYOI_PROBE_KEYS:-}; do
  case "$key" in
    *[!a-z0-9_]*) echo "probe: refusing key $key" >&2; continue ;;
  esac
  var="BYOI_PROBE_$(printf %s "$key" | tr '[:lower:]' '[:upper:]')"
  command="${!var:-}"
  [ -n "$command" ] || { echo "byoi-probe $key 127"; continue; }
  out=$(timeout 30 bash -c "$command" 2>&1 </dev/null)
  code=$?
  line=$(printf %s "$out" | head -n 4 | cut -c1-160 | tr '\n' '\037')
  echo "byoi-probe $key $code ${line%$'\037'}"
done
exit 0
