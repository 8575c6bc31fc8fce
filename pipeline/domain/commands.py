"""The command language shared by every front end: text in, a Command out.

``parse`` raises CommandError for every malformed input, with a specific message and the
command's usage line; it raises nothing else. Checks that need the configuration (does the app
exist?) happen in the service.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.domain.models import Strategy
from pipeline.errors import ByoiError, CommandError

MAX_COUNT = 1000
_APP = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_ENV = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,254}$")
_SERVER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_COUNT = re.compile(r"^[+-]?[0-9]+$")
_BATCH = re.compile(r"^[1-9][0-9]{0,3}%?$")

# Usage lines name the command only; each front end says how to type it (bot/views/words.py).
USAGE = {
    "help": "help [command]",
    "scale": "scale <app> <count|+n|-n> [--env E] [--image I] "
    "[--strategy parallel|serial] [--dry-run]",
    "status": "status [app]",
    "images": "images [app] · images prune <app> [--env E] [--keep N]",
    "refresh": "refresh <app> [--env E] [--from SERVER] [--force]",
    "roll": "roll <app> [--env E] [--batch N|P%] [--canary] [--image I]",
    "continue": "continue <run>",
    "history": "history [app]",
    "cancel": "cancel <run>",
    "approve": "approve <run>",
    "reject": "reject <run>",
    "alerts": "alerts [app]",
    "snooze": "snooze <alert>",
}
SUMMARY = {
    "help": "this help",
    "scale": "set how many servers an app runs (5), or change it (+2, -1)",
    "status": "servers, their images, runs in flight",
    "images": "images in use with age, versions, staleness; prune deletes unused old ones",
    "refresh": "bake a fresh image (versions measured), or snapshot SERVER with --from",
    "roll": "replace servers not on the current image, batch by batch, surge first",
    "continue": "let a roll paused after its canary go on (the button does the same)",
    "history": "recent runs: who asked, who approved, outcome",
    "cancel": "stop a run; finished servers stay, in-flight ones are rolled back",
    "approve": "approve a run (the buttons do the same)",
    "reject": "reject a run (the buttons do the same)",
    "alerts": "stale-image alerts that are not resolved",
    "snooze": "silence a stale-image alert for 7 days (the button does the same)",
}


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class Scale:
    app: str
    count: int
    relative: bool
    env: str | None = None
    image: str | None = None
    strategy: Strategy = Strategy.PARALLEL
    dry_run: bool = False


# A command that adds no field to its kind needs no @dataclass of its own: it inherits the
# fields, equality (only with its own class), repr and pattern matching.


@dataclass(frozen=True)
class _View:
    """A read-only command about one app, or every app when none is named."""

    app: str | None = None


class Status(_View):
    """`status [app]`"""


class Images(_View):
    """`images [app]`"""


class History(_View):
    """`history [app]`"""


class Alerts(_View):
    """`alerts [app]`"""


@dataclass(frozen=True)
class _InEnv:
    """A command that plans a run in one environment of an app (the default one if none)."""

    app: str
    env: str | None = None


@dataclass(frozen=True)
class Refresh(_InEnv):
    source: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Roll(_InEnv):
    batch: str | None = None
    canary: bool = False
    image: str | None = None


@dataclass(frozen=True)
class Prune(_InEnv):
    keep: int = 3


@dataclass(frozen=True)
class _OnRun:
    """A command about one run, by its number."""

    run_id: int


class Continue(_OnRun):
    """`continue <run>`"""


class Cancel(_OnRun):
    """`cancel <run>`"""


class Approve(_OnRun):
    """`approve <run>`"""


class Reject(_OnRun):
    """`reject <run>`"""


@dataclass(frozen=True)
class Snooze:
    alert_id: int


Command = (
    Alerts
    | Snooze
    | Help
    | Scale
    | Status
    | Images
    | History
    | Refresh
    | Cancel
    | Approve
    | Reject
    | Roll
    | Continue
    | Prune
)


class _Bad(ByoiError):
    """A word ``parse`` refuses, said before it knows the command's usage line."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def shown(text: str, limit: int = 40) -> str:
    """A user's text made safe to echo: printable, short, no chat mentions or markup."""
    cleaned = "".join(
        c if unicodedata.category(c)[0] not in "CZ" or c == " " else "?" for c in text
    )
    cleaned = cleaned.replace("<", "‹").replace(">", "›").replace("`", "'").replace("@", "＠")
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


def parse(text: str) -> Command:
    """The command ``text`` says; raises CommandError saying what is wrong with it."""
    # Chat apps and phones turn "--" into a dash; read them as the option they were meant to be.
    words = [re.sub(r"^[\u2013\u2014]", "--", w) for w in text.split()]
    if words and words[0].lower() in ("/byoi", "byoi"):
        words = words[1:]
    if not words:
        raise CommandError("Say what to do, for example `scale api 3`.", USAGE["help"])
    verb = words[0].lower()
    if verb not in USAGE:
        known = ", ".join(USAGE)
        raise CommandError(
            f"Unknown command `{shown(words[0])}` (commands: {known}).", USAGE["help"]
        )
    try:
        return _PARSERS[verb](words[1:])
    except _Bad as bad:
        raise CommandError(bad.message, USAGE[verb]) from None


def _split(args: list[str], flags: dict[str, bool]) -> tuple[list[str], dict[str, str]]:
    """Positional words and `--flag value` / `--flag=value` options (bool flags take none)."""
    positional: list[str] = []
    options: dict[str, str] = {}
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if not word.startswith("--"):
            positional.append(word)
            continue
        name, _, value = word[2:].partition("=")
        name = name.lower()
        if name not in flags:
            allowed = ", ".join(f"--{f}" for f in flags) or "none"
            raise _Bad(f"Unknown option `{shown(word)}` (options: {allowed}).")
        if name in options:
            raise _Bad(f"`--{name}` is given twice.")
        if flags[name]:
            if value:
                raise _Bad(f"`--{name}` takes no value.")
            options[name] = "yes"
            continue
        if not value:
            if index >= len(args) or args[index].startswith("--"):
                raise _Bad(f"`--{name}` needs a value.")
            value = args[index]
            index += 1
        options[name] = value
    return positional, options


def _app(word: str) -> str:
    if not _APP.match(word):
        if re.match(r"^[a-z][a-z0-9-]*$", word):
            raise _Bad(f"`{shown(word)}` is not an app name: app names are at most 31 characters.")
        raise _Bad(f"`{shown(word)}` is not an app name (lowercase letters, digits and '-').")
    return word


def _no_more(positional: list[str], allowed: int, what: str) -> None:
    """Name the first word past what a command takes, instead of a generic usage error."""
    if len(positional) > allowed:
        raise _Bad(f"Unexpected `{shown(positional[allowed])}` after {what}.")


def _option(options: dict[str, str], name: str, pattern: re.Pattern[str], what: str) -> str | None:
    """The value of ``--name``, if given and it matches ``pattern`` (else it is not ``what``)."""
    value = options.get(name)
    if value is not None and not pattern.match(value):
        raise _Bad(f"`{shown(value)}` is not {what}.")
    return value


def _env(options: dict[str, str]) -> str | None:
    return _option(options, "env", _ENV, "an environment name")


_OWN_LIMIT = "; an app's own max_servers in byoi.yml applies too."


def _count(word: str) -> tuple[int, bool]:
    if not _COUNT.match(word):
        raise _Bad(
            f"`{shown(word)}` is not a server count: give a number (5) or a change (+2, -1)."
        )
    relative = word[0] in "+-"
    if len(word.lstrip("+-")) > 6 or abs(int(word)) > MAX_COUNT:
        if relative:
            more = _OWN_LIMIT if word[0] == "+" else "."
            raise _Bad(
                f"`{shown(word)}` changes more servers than byoi will plan at once "
                f"({MAX_COUNT} at most){more}"
            )
        raise _Bad(
            f"{shown(word)} servers is more than byoi will plan in one command "
            f"({MAX_COUNT} at most){_OWN_LIMIT}"
        )
    value = int(word)
    if relative and value == 0:
        raise _Bad(f"`{word}` changes nothing: give a change like +2 or -1, or a count like 3.")
    return value, relative


def _run_id(args: list[str], what: str = "run") -> int:
    if not args:
        raise _Bad(f"Give one {what} number, for example `12`.")
    _no_more(args, 1, f"the {what} number")
    word = args[0].removeprefix("#")
    article = "an" if what[0] in "aeiou" else "a"
    if word.isascii() and word.isdigit() and len(word) > 12:
        raise _Bad(f"`{shown(args[0])}` is too big to be {article} {what} number.")
    if not word.isascii() or not word.isdigit() or int(word) == 0:
        raise _Bad(f"`{shown(args[0])}` is not {article} {what} number.")
    return int(word)


def _optional_app(args: list[str]) -> str | None:
    positional, _ = _split(args, {})
    _no_more(positional, 1, f"the app `{shown(positional[0])}`" if positional else "")
    return _app(positional[0]) if positional else None


def _only_app(positional: list[str], example: str) -> None:
    if len(positional) != 1:
        raise _Bad(f"Give one app, for example `{example}`.")


def _image(options: dict[str, str]) -> str | None:
    return _option(options, "image", _IMAGE, "an image id, name or family:<name>")


def _parse_scale(args: list[str]) -> Scale:
    positional, options = _split(
        args, {"env": False, "image": False, "strategy": False, "dry-run": True}
    )
    if len(positional) < 2:
        raise _Bad("Give an app and a count, for example `scale api 5` or `scale api +2`.")
    app = _app(positional[0])
    count, relative = _count(positional[1])
    _no_more(positional, 2, f"`scale {app} {positional[1]}`")
    if not relative and count < 0:
        raise _Bad("A count cannot be negative.")
    image = _image(options)
    strategy = options.get("strategy", Strategy.PARALLEL.value).lower()
    if strategy not in {s.value for s in Strategy}:
        raise _Bad(f"`{shown(strategy)}` is not a strategy (parallel or serial).")
    return Scale(
        app, count, relative, _env(options), image, Strategy(strategy), "dry-run" in options
    )


def _parse_refresh(args: list[str]) -> Refresh:
    positional, options = _split(args, {"env": False, "from": False, "force": True})
    if not positional:
        raise _Bad("Give one app, for example `refresh api`.")
    _no_more(positional, 1, f"`refresh {shown(positional[0])}`")
    source = _option(options, "from", _SERVER, "a server id")
    return Refresh(_app(positional[0]), _env(options), source, "force" in options)


def _parse_roll(args: list[str]) -> Roll:
    positional, options = _split(
        args, {"env": False, "batch": False, "canary": True, "image": False}
    )
    _only_app(positional, "roll api --batch 2")
    batch = options.get("batch")
    if batch is not None and not _BATCH.match(batch):
        raise _Bad(f"`{shown(batch)}` is not a batch: give a count (2) or a share (25%).")
    if batch is not None and batch.endswith("%") and int(batch[:-1]) > 100:
        raise _Bad("A batch cannot be more than 100%.")
    image = _image(options)
    return Roll(_app(positional[0]), _env(options), batch, "canary" in options, image)


def _parse_images(args: list[str]) -> Images | Prune:
    if not args or args[0].lower() != "prune":
        return Images(_optional_app(args))
    positional, options = _split(args[1:], {"env": False, "keep": False})
    _only_app(positional, "images prune api --keep 3")
    keep = options.get("keep", "3")
    if not keep.isascii() or not keep.isdigit() or not 1 <= int(keep) <= 100:
        raise _Bad(f"`{shown(keep)}` is not a number of images to keep (1 to 100).")
    return Prune(_app(positional[0]), _env(options), int(keep))


def _parse_help(args: list[str]) -> Help:
    if not args:
        return Help()
    topic = args[0].lower()
    if len(args) > 1 or topic not in USAGE:
        raise _Bad(f"No help for `{shown(' '.join(args))}`.")
    return Help(topic)


_PARSERS: dict[str, Callable[[list[str]], Command]] = {
    "help": _parse_help,
    "scale": _parse_scale,
    "status": lambda a: Status(_optional_app(a)),
    "images": _parse_images,
    "roll": _parse_roll,
    "continue": lambda a: Continue(_run_id(a)),
    "history": lambda a: History(_optional_app(a)),
    "refresh": _parse_refresh,
    "cancel": lambda a: Cancel(_run_id(a)),
    "approve": lambda a: Approve(_run_id(a)),
    "reject": lambda a: Reject(_run_id(a)),
    "alerts": lambda a: Alerts(_optional_app(a)),
    "snooze": lambda a: Snooze(_run_id(a, "alert")),
}
