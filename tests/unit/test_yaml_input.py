"""Hostile and unusual YAML: every file ends in data or in clear `file:line` problems, quickly."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.yamlsrc import MAX_BYTES, MAX_DEPTH, ConfigError, Node, load, parse, plain

BOMB = "".join(
    f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True)
)
BOMB = 'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n' + BOMB


def problems_of(text: str, keep_text: bool = False) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse(text, "m.yml", (lambda key: key.endswith("version")) if keep_text else _never)
    return [str(p) for p in caught.value.problems]


def _never(_key: str) -> bool:
    return False


def refused_quickly(path: Path) -> list[str]:
    started = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load(path, "m.yml")
    assert time.monotonic() - started < 10  # a blow-up guard, not a timing (shared CI)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "production:\n  rails: {}\n  mysql: {}\n  rails: {server: {size: big}}\n",
            "m.yml:4: production.rails: is given twice (lines 2 and 4); keep one",
        ),
        (
            "staging:\n  rails: {}\nproduction:\n  rails: {}\nstaging:\n  docker: {}\n",
            "m.yml:5: staging: is given twice (lines 1 and 5); keep one",
        ),
        (
            "rails:\n  configuration:\n    cloud_image: a\n    ruby_version: 3.2.2\n"
            "    cloud_image: b\n",
            "m.yml:5: rails.configuration.cloud_image: is given twice (lines 3 and 5); keep one",
        ),
        (
            "base: &b {x: 1}\nweb:\n  <<: *b\n  <<: *b\n",
            "m.yml:4: web.<<: is given twice (lines 3 and 4); keep one",
        ),
    ],
)
def test_a_key_given_twice_names_both_lines(text: str, expected: str) -> None:
    assert problems_of(text) == [expected]


def test_a_merge_may_be_overridden_and_the_first_source_wins() -> None:
    root = parse("a: &a {x: 1, y: 1}\nb: &b {x: 2, z: 2}\nc:\n  <<: [*a, *b]\n  y: 3\n", "m.yml")

    assert plain(root)["c"] == {"x": 1, "y": 3, "z": 2}
    assert root.value["c"].line_of("x") == 1  # where the merged value was written
    assert root.anchors == {"a": "a", "b": "b"}
    assert root.aliased == {"a", "b"}


@pytest.mark.parametrize(
    ("text", "tag"),
    [
        ("x: !!python/object/apply:os.system [ls]\n", "!!python/object/apply:os.system"),
        ("x: !!python/name:os.system ''\n", "!!python/name:os.system"),
        ("x: !ruby/object:Gem::Version {version: 1}\n", "!ruby/object:Gem::Version"),
        ("x: !!binary aGk=\n", "!!binary"),
        ("x: !!set {a: null}\n", "!!set"),
        ("x: !Ref y\n", "!Ref"),
    ],
)
def test_unknown_tags_are_refused_by_name(text: str, tag: str) -> None:
    assert problems_of(text) == [
        f"m.yml:1: x: unknown tag {tag}: byoi reads plain maps, lists, strings, numbers and "
        "booleans"
    ]


def test_standard_tags_are_read() -> None:
    assert plain(parse("a: !!str 2.10\nb: !!int '3'\n", "m.yml")) == {"a": "2.10", "b": 3}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            BOMB,
            "m.yml:6: invalid YAML: aliases expand to more than 100,000 keys and values "
            "(byoi's limit)",
        ),
        ("a: &a {b: *a}\n", "m.yml:1: invalid YAML: recursive alias: &a contains *a"),
        ("a: &a [1, *a]\n", "m.yml:1: invalid YAML: recursive alias: &a contains *a"),
        ("a: &a {<<: *a}\n", "m.yml:1: invalid YAML: recursive alias: &a contains *a"),
        (
            "[" * 5000 + "]" * 5000,
            f"m.yml:1: invalid YAML: nested more than {MAX_DEPTH} levels deep",
        ),
    ],
)
def test_alias_bombs_recursion_and_depth_are_refused_in_well_under_a_second(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "m.yml"
    path.write_text(text)

    assert refused_quickly(path) == [expected]


def test_aliases_cannot_nest_past_the_depth_limit() -> None:
    text = "a: &a " + "[" * 40 + "]" * 40 + "\nb: " + "[" * 30 + "*a" + "]" * 30 + "\n"

    assert problems_of(text) == [f"m.yml:1: invalid YAML: nested more than {MAX_DEPTH} levels deep"]


def test_versions_are_kept_as_written_never_as_floats() -> None:
    root = parse(
        "ruby_version: 2.10\nnode_version: 10.10\nversion: 9.6\nother: 2.10\nq_version: '1.0'\n"
        "x_version: 3\nempty_version:\n",
        "m.yml",
        lambda key: key.endswith("version"),
    )

    assert plain(root) == {
        "ruby_version": "2.10",
        "node_version": "10.10",
        "version": "9.6",
        "other": 2.1,
        "q_version": "1.0",
        "x_version": "3",
        "empty_version": None,
    }


def test_text_that_is_not_utf8_is_reported_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_bytes(b"a: 1\nb: 2\nc: caf\xe9\n")

    assert refused_quickly(path) == ["m.yml:3: not UTF-8 text (byte 0xe9 cannot be decoded)"]


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "m.yml"
    os.mkfifo(fifo)

    assert refused_quickly(fifo) == [
        "m.yml:0: is not a regular file; byoi reads configuration only from regular files"
    ]


def test_devices_and_directories_are_refused(tmp_path: Path) -> None:
    assert refused_quickly(Path("/dev/zero")) == [
        "m.yml:0: is not a regular file; byoi reads configuration only from regular files"
    ]
    assert refused_quickly(tmp_path) == [
        "m.yml:0: is a directory; byoi reads configuration only from regular files"
    ]


def test_a_file_over_the_cap_is_refused_without_being_parsed(tmp_path: Path) -> None:
    big = tmp_path / "m.yml"
    line = "key_%d: value\n"
    with big.open("w") as out:
        for n in range(2_000_000):
            out.write(line % n)
    assert big.stat().st_size > 20 * MAX_BYTES

    assert refused_quickly(big) == ["m.yml:0: is larger than 1 MB, byoi's limit for a file"]


def test_a_file_just_under_the_cap_is_read(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    body = "k: '" + "x" * (MAX_BYTES - 10) + "'\n"
    path.write_text(body)

    assert len(load(path).value["k"]) == MAX_BYTES - 10


# Fuzzing: documents built from anchors, aliases, merge keys, tags and repeated keys.

KEYS = st.sampled_from(["a", "b", "c", "<<"])
SCALARS = st.sampled_from(
    [
        *("1", "x", "2.10", "'q'", "~", "true", "!!str 5", "!!int 3", "[]", "{}"),
        *("!!python/object:os.system x", "!foo y", "!!binary aGk=", "*x0", "*x1", "*x2"),
    ]
)
TAGS = st.sampled_from(["", "", "", "!!map ", "!!python/object:x ", "!!set ", "!!omap "])


def _flow_map(pairs: list[tuple[str, str]], tag: str) -> str:
    return tag + "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}"


def _merge(aliases: list[str], pairs: list[tuple[str, str]]) -> str:
    rest = "".join(f", {k}: {v}" for k, v in pairs)
    return "{<<: [" + ", ".join(aliases) + "]" + rest + "}"


def _children(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.builds(_flow_map, st.lists(st.tuples(KEYS, children), max_size=4), TAGS),
        st.builds(lambda xs: "[" + ", ".join(xs) + "]", st.lists(children, max_size=3)),
        st.builds(
            _merge,
            st.lists(st.sampled_from(["*x0", "*x1", "*x2"]), min_size=1, max_size=3),
            st.lists(st.tuples(KEYS, children), max_size=2),
        ),
        st.builds(lambda n, v: f"&y{n} {v}", st.integers(0, 2), children),
    )


VALUES = st.recursive(SCALARS, _children, max_leaves=12)
HEADER = "h0: &x0 {a: 1, b: 2}\nh1: &x1 {c: 3, <<: *x0}\nh2: &x2 {a: 4}\n"
DOCUMENTS = st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=6).map(
    lambda entries: HEADER + "".join(f"{k}: {v}\n" for k, v in entries)
)
WHERE = re.compile(r"^m\.yml:\d+: ")


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_fuzzed_documents_parse_like_pyyaml_or_fail_with_located_problems(text: str) -> None:
    started = time.monotonic()
    try:
        root = parse(text, "m.yml")
    except ConfigError as exc:
        assert exc.problems
        lines = text.count("\n") + 1
        for problem in exc.problems:
            assert WHERE.match(str(problem)), problem
            assert 0 <= problem.line <= lines, problem
        return
    finally:
        assert time.monotonic() - started < 10  # a blow-up guard, not a timing (shared CI)
    assert isinstance(root, Node)
    # Accepted documents mean what PyYAML says they mean, except where a merged map merges
    # another with the same key: PyYAML lets the inner merge win, the YAML spec its own key.
    if text.removeprefix(HEADER).count("<<") <= 1:
        assert plain(root) == yaml.safe_load(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_data_or_problems(data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yml"
        path.write_bytes(data)
        try:
            load(path, "m.yml")
        except ConfigError as exc:
            assert all(WHERE.match(str(p)) for p in exc.problems)
