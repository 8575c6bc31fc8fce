"""The use cases: scale, approve, reject, cancel, refresh, alerts and the read-only views."""
