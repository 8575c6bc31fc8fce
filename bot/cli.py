"""The `byoi` command and the composition root: shell (the default without Slack credentials),
serve, check-config, scan. Everything is built once here, and recovered once."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path

from bot import logs, memory
from bot.shell import demo, scan_json, text
from bot.wiring import App, UnavailableProvider, build, utcnow
from pipeline.config.loader import load_config
from pipeline.config.model import Config
from pipeline.config.yamlsrc import ConfigError
from pipeline.domain.models import Run
from pipeline.errors import Inconsistency, UserError
from pipeline.execution import recovery
from pipeline.services.display import Display
from pipeline.state.store import Store

log = logging.getLogger("byoi")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="byoi", description=__doc__)
    parser.add_argument("--config", help="path of byoi.yml (default: $BYOI_CONFIG, ./byoi.yml)")
    sub = parser.add_subparsers(dest="command")
    shell = sub.add_parser("shell", help="interactive console on the same commands as Slack")
    shell.add_argument("--user", default=None, help="who is typing (a Slack-style user id)")
    sub.add_parser("serve", help="run the Slack bot")
    check = sub.add_parser("check-config", help="validate byoi.yml and its manifests")
    check.add_argument("path", nargs="?", help="path of byoi.yml")
    scan = sub.add_parser("scan", help="check images for age, drift and deprecation once")
    scan.add_argument("--json", action="store_true", help="print the report as JSON")
    init = sub.add_parser("init", help="write a starter byoi.yml from a Cloud 66 manifest")
    init.add_argument("--manifest", default=".cloud66/manifest.yml", help="the Cloud 66 manifest")
    image = sub.add_parser("image", help="images on the local provider").add_subparsers(
        dest="verb", required=True
    )
    imports = image.add_parser("import", help="a directory becomes an image (versions measured)")
    imports.add_argument("directory", help="the image's root tree")
    imports.add_argument("--app", required=True)
    imports.add_argument("--env", default=None)
    imports.add_argument("--family", default=None, help="default: the family the app uses")
    adopt = sub.add_parser(
        "adopt", help="take over the servers of another byoi installation (an old database)"
    )
    source = adopt.add_mutually_exclusive_group(required=True)
    source.add_argument("--from", dest="database", help="path of the old installation's database")
    source.add_argument("--install", help="the old installation's id (the xxxxxx in byoi-xxxxxx-)")
    adopt.add_argument("--dry-run", action="store_true", help="list the servers, change nothing")
    return parser


def _config_path(explicit: str | None) -> Path | None:
    chosen = explicit or os.environ.get("BYOI_CONFIG")
    if chosen:
        return Path(chosen)
    default = Path("byoi.yml")
    return default if default.exists() else None


def _load(path: Path, starting: bool = True) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        if starting:
            print(
                f"byoi: {len(exc.problems)} problem(s) in the configuration; not starting.",
                file=sys.stderr,
            )
        elif len(exc.problems) > 1:
            print(f"byoi: {len(exc.problems)} problems in the configuration.", file=sys.stderr)
        return None


def _required(path: Path | None, command: str) -> Config | None:
    """The configuration a command cannot work without, or None (said on stderr)."""
    if path is None:
        print(
            f"byoi: {command} needs a byoi.yml (--config, $BYOI_CONFIG or ./byoi.yml).",
            file=sys.stderr,
        )
        return None
    return _load(path)


def check_config(path: Path | None) -> int:
    if path is None:
        print("byoi: no byoi.yml here; give its path or set BYOI_CONFIG.", file=sys.stderr)
        return 2
    config = _load(path, starting=False)
    if config is None:
        return 1
    envs = sum(len(a.environments) for a in config.apps.values())
    print(f"{path}: ok ({len(config.apps)} app(s), {envs} environment(s))")
    return 0


def shell(path: Path | None, user: str | None) -> int:
    from bot.shell import console as shell_module

    who = shell_module.user_id(user or demo.DEMO_USER)
    if who is None:
        print(
            f"byoi: --user {user!r} is not a Slack user id (U… or W… and letters or digits, "
            "for example --user UBOB).",
            file=sys.stderr,
        )
        return 2
    banner = None
    if path is None:
        directory = Path(os.environ.get("BYOI_DEMO_DIR", ".byoi-demo"))
        path = demo.prepare(directory, utcnow())
        banner = demo.banner(directory)
    config = _load(path)
    if config is None:
        return 1
    console = shell_module.Console(sys.stdout)
    store = Store(config.database)  # first: the shell prints phases read from it
    app = build(config, shell_module.TextNotifier(console, Display(store)), store=store)
    try:
        _recover(app, _to_stderr)
        code = shell_module.main(app, who, banner, console)
    except BaseException:
        app.close()
        raise
    if code == shell_module.STOPPED:
        # Stopped now, at a second Ctrl-C: the runs in flight are left as a crash leaves
        # them (each step's start stored before its call), and the next start resumes them.
        sys.stdout.flush()
        os._exit(code)
    app.close()
    return code


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _recover(app: App, say: Callable[[str], None]) -> None:
    """Before any new work: remove what no run accounts for, then resume runs left in flight."""
    now = app.clock()
    for orphan in recovery.reconcile(app.store, app.config, app.providers, now):
        say(
            f"reconciler: {orphan.server_id} ({orphan.key}) was not accounted for by any run:"
            f" {orphan.outcome}"
        )
    resumed = recovery.resume(app.store, app.runner, now)
    if resumed:
        say(f"resuming run(s) {', '.join(map(str, resumed))} left in flight")


def _has_slack_credentials() -> bool:
    return bool(os.environ.get("SLACK_BOT_TOKEN")) and bool(
        os.environ.get("SLACK_SIGNING_SECRET") or os.environ.get("SLACK_APP_TOKEN")
    )


def main(argv: list[str] | None = None) -> int:
    from dotenv import load_dotenv

    load_dotenv(Path.cwd() / ".env", override=False)
    logs.configure(os.environ)
    args = _parser().parse_args(argv)
    command = args.command or ("serve" if _has_slack_credentials() else "shell")
    if args.command is None and command == "shell" and os.environ.get("SLACK_BOT_TOKEN"):
        print(
            "byoi: SLACK_BOT_TOKEN is set but neither SLACK_SIGNING_SECRET (HTTP) nor "
            "SLACK_APP_TOKEN (Socket Mode) is, so this is the local shell; `byoi serve` needs "
            "one of them (docs/slack-setup.md).",
            file=sys.stderr,
        )
    try:
        return _dispatch(command, args)
    except UserError as exc:  # the one place the command line turns errors into what it prints
        print(f"byoi: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, UnavailableProvider) and command != "scan" else 2


def _dispatch(command: str, args: argparse.Namespace) -> int:
    if command == "check-config":
        return check_config(Path(args.path) if args.path else _config_path(args.config))
    if command == "shell":
        return shell(_config_path(args.config), getattr(args, "user", None))
    if command == "serve":
        return serve(_config_path(args.config))
    if command == "scan":
        return scan(_config_path(args.config), as_json=args.json)
    if command == "image":  # its one verb, import (argparse requires it)
        return image_import(_config_path(args.config), args)
    if command == "init":
        from bot import init

        return init.init(Path(args.manifest), Path(args.config or "byoi.yml"))
    if command == "adopt":
        return adopt(_config_path(args.config), args.database, args.install, dry_run=args.dry_run)
    raise Inconsistency(f"argparse let through an unknown command: {command}")


def scan(path: Path | None, *, as_json: bool) -> int:
    """Exit 0 when every image is fresh, 1 when there are findings, 2 when it cannot check."""
    config = _required(path, "scan")
    if config is None:
        return 2
    app = build(config, _Quiet())
    try:
        reply = app.service.views.scan(app.clock(), "cli")
    finally:
        app.close()
    print(json.dumps(scan_json.as_json(reply), indent=2) if as_json else text.scan_text(reply))
    if any(o.error for o in reply.observations):
        return 2
    return 1 if reply.findings else 0


def image_import(path: Path | None, args: argparse.Namespace) -> int:
    from bot import images

    config = _load(path) if path else None
    if config is None:
        print(
            "byoi: image import needs a valid byoi.yml (--config, $BYOI_CONFIG).", file=sys.stderr
        )
        return 2
    env = images.env_for(config, args.app, args.env)
    app = build(config, _Quiet())
    try:
        return images.import_directory(app, Path(args.directory), env, args.family)
    finally:
        app.close()


def adopt(path: Path | None, database: str | None, install: str | None, *, dry_run: bool) -> int:
    """Record another installation's live servers as this one's (see docs/operations.md)."""
    from pipeline.services import adoption

    config = _load(path) if path is not None else None
    if config is None:
        print("byoi: adopt needs a valid byoi.yml (--config, $BYOI_CONFIG).", file=sys.stderr)
        return 2
    try:
        other = install or adoption.install_id_of(Path(str(database)))
    except (ValueError, OSError) as exc:
        print(f"byoi: cannot read {database}: {exc}", file=sys.stderr)
        return 2
    app = build(config, _Quiet())
    try:
        if other == app.store.install_id:
            print(f"byoi: {other} is this installation already.", file=sys.stderr)
            return 2
        found = (
            adoption.candidates(app.store, config, app.providers, {other})
            if dry_run
            else adoption.adopt(app.store, config, app.providers, {other}, app.clock())
        )
    finally:
        app.close()
    verb = "would adopt" if dry_run else "adopted"
    for item in found:
        print(f"{verb} {item.provider} {item.server_id} ({item.key}) for {item.app}/{item.env}")
    print(f"{len(found)} server(s) of installation {other} {verb}.")
    return 0


class _Quiet:
    needs_servers = False

    def run_changed(self, run: Run) -> None:
        pass


def serve(path: Path | None) -> int:
    missing = [name for name in ("SLACK_BOT_TOKEN",) if not os.environ.get(name)]
    if not os.environ.get("SLACK_SIGNING_SECRET") and not os.environ.get("SLACK_APP_TOKEN"):
        missing.append("SLACK_SIGNING_SECRET (HTTP) or SLACK_APP_TOKEN (Socket Mode)")
    if missing:
        print(f"byoi: serve needs {', '.join(missing)}; see docs/slack-setup.md.", file=sys.stderr)
        return 2
    if path is None:
        _required(path, "serve")
        return 2
    from bot.slack.lifecycle import handle_signals

    stopping = handle_signals()
    config = _load(path)
    if config is None:
        return 1
    from bot.metrics import Metrics
    from bot.slack import serve as slack

    memory.cap_arenas()  # before the threads: a server lives for months (bot/memory.py)
    metrics = Metrics()
    client = slack.slack_client(metrics)
    store = Store(config.database)  # first: the cards record on it where each run is shown
    cards = slack.run_cards(client, Display(store), utcnow, config)
    # Slack edits are coalesced to one per 2 s anyway: re-reading a run on every step of every
    # server is waste, and even ten reads a second of a 1,000-server run cost a third of a core.
    app = build(
        config,
        cards,
        store=store,
        notify_interval=slack.NOTIFY_INTERVAL,
        meter=metrics,
        wrap_provider=metrics.wrap_provider,
    )
    _recover(app, log.warning)
    return slack.serve(app, cards, client, metrics, stopping)


if __name__ == "__main__":
    sys.exit(main())
