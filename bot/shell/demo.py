"""The bundled demo: a byoi.yml, a Cloud 66 manifest and a seeded image on the local provider.

The image is deliberately 45 days old and built with Ruby 3.1.2 while the manifest declares
3.2.2, and it carries an old release and secrets that scrub must remove.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from providers.local import LocalProvider

DEMO_USER = "UALICE"
SECOND_USER = "UBOB"

CONFIG = """\
# The demo configuration that `byoi shell` writes when you have none. See docs/configuration.md.
database: byoi.db
providers:
  local:
    root: local
groups:
  platform: [UALICE, UBOB, UCAROL]  # production: 2 approvals, never by the requester
apps:
  demo:
    manifest: manifest.yml
    provider: local
    default_env: staging
    image: family:demo
    target: demo-lb
    operators: ["@platform"]
    approvers: ["@platform"]
    max_servers: 10
    drain_seconds: 0
    release: v2.0.0
    deploy_command: |
      mkdir -p current
      echo "$BYOI_RELEASE" > current/VERSION
      echo "deployed by run $BYOI_RUN onto $BYOI_SERVER" > current/DEPLOYED
    health_command: test -s current/VERSION
    # A refresh bakes on a builder: this installs the declared Ruby (here: the demo's marker).
    bake: |
      ruby="$BYOI_ROOT/usr/local/bin/ruby"
      echo '#!/bin/sh' > "$ruby"
      echo "echo 'ruby ${BYOI_DECLARED_RUBY_VERSION}p0 (baked by the demo)'" >> "$ruby"
      chmod 755 "$ruby"
    environments:
      production:
        approvals: 2
"""

MANIFEST = """\
# A Cloud 66 manifest (.cloud66/manifest.yml format) with byoi's cloud_image.
staging: &staging
  rails:
    configuration:
      ruby_version: 3.2.2
      operating_system: ubuntu2204
    server:
      unique_name: web
      size: small
      region: local
production:
  <<: *staging
"""

IMAGE_FILES = {
    "/etc/os-release": 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n',
    "/etc/machine-id": "5f2c8a0b9d1e4f3a8b7c6d5e4f3a2b1c\n",
    "/etc/ssh/ssh_host_ed25519_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n(host key of the "
    "server this image was taken from)\n-----END OPENSSH PRIVATE KEY-----\n",
    "/etc/ssh/ssh_host_ed25519_key.pub": "ssh-ed25519 AAAAC3Nza... root@source-host\n",
    "/var/lib/cloud/instances/i-0source/boot-finished": "2026-10-12\n",
    "/srv/app/current/VERSION": "v1.4.2 (the old release baked into the image)\n",
    "/srv/app/.env": "SECRET_KEY_BASE=0f9e8d7c6b5a\n",
    "/srv/app/shared/config/secrets.env": "DATABASE_URL=postgres://app:hunter2@db/app\n",
    "/srv/app/shared/log/production.log": "I, [2026-10-12] Started GET / for 10.0.0.7\n",
    "/usr/local/bin/ruby": "#!/bin/sh\necho 'ruby 3.1.2p20 (2022-04-12 revision 4491bb740a)'\n",
}
RUBY = "/usr/local/bin/ruby"
"""The demo's Ruby: a script that answers `ruby -v` as the real one does, read by the probe."""


def prepare(directory: Path, now: datetime) -> Path:
    """Write the demo into ``directory`` (once) and return the path of its byoi.yml."""
    config = directory / "byoi.yml"
    if config.exists():
        return config
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifest.yml").write_text(MANIFEST)
    provider = LocalProvider(directory / "local")
    provider.create_image(
        "demo-base-v1",
        IMAGE_FILES,
        family="demo",
        versions={"ruby_version": "3.1.2", "operating_system": "ubuntu2204"},
        created_at=now - timedelta(days=45),
    )
    config.write_text(CONFIG)  # last: its presence means the demo is complete
    return config


def banner(directory: Path) -> str:
    return f"""\
byoi demo: app `demo` on the local provider (files under {directory}/local).
You are {DEMO_USER}; {SECOND_USER} is a second operator who can approve your runs.
Try: scale demo 3 · as {SECOND_USER} · approve 1 · status · refresh demo · approve 2 ·
roll demo · approve 3 · status · scan · history
Type `help` for every command, `quit` to leave."""
