"""Fuzzing the topology loader: any mutation of a real topology file gives a topology or one clear
error, and ``hierclust topology validate`` exits 0 or 2 with one line, never a traceback.

Documents start from the shipped ``topologies/*.toml`` (and a generated one) and are mutated
where an operator's edit could go wrong: a value of another type or out of range, a key removed,
an unknown key added, a table where a value was, a whole group duplicated under another name; and
as text: a line deleted, duplicated or cut, bytes flipped. ``make test`` runs a few hundred
documents; ``make fuzz`` (marker ``fuzz``) many more.
"""

from __future__ import annotations

import datetime
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.errors import FileKeyError
from hierclust.topology import Topology, TopologyError, generate_document, loads

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    path.name: path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "topologies").glob("*.toml"))
    if path.name != "mpp-10k.toml"  # the same shape as mpp-1k, ten times the loading time
}
SOURCES["generated.toml"] = tomli_w.dumps(generate_document(12, 5, base_port=9000))
DOCUMENTS = {name: tomllib.loads(text) for name, text in SOURCES.items()}
FUZZ_EXAMPLES = int(os.environ.get("HIERCLUST_FUZZ_EXAMPLES", "20000"))
runner = CliRunner()

toml_scalars = (
    st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([0, -1, 1, 2, 3, 64, 65, 65535, 65536, 10**9])
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "cn[1-0]", "cn[01-1000000]", "a[1-3", "127.0.0.1:99999", "x:1", "odd"])
    | st.booleans()
    | st.dates()
    | st.just(datetime.time(1, 2))
)
toml_values = st.recursive(
    toml_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
key_names = st.sampled_from(
    ["nodes", "parent", "fanout", "sizes", "tiebreaker", "tuning", "name", "host", "port",
     "base_port", "hosts", "kind", "address", "path", "heartbeat_ms", "lease_ms", "secret_file"]
) | st.text(max_size=8)  # fmt: skip


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found.extend(_paths(v, (*prefix, i)))
    return found


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@st.composite
def mutated_documents(draw: st.DrawFn) -> tuple[str, str]:
    """(name, TOML text) of a shipped topology after a few structural edits."""
    name = draw(st.sampled_from(sorted(DOCUMENTS)))
    document = _copy(DOCUMENTS[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        action = draw(st.sampled_from(("replace", "replace", "delete", "add", "copy")))
        if action == "replace":
            parent[last] = draw(toml_values)
        elif action == "delete":
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(key_names)] = draw(toml_values)
        elif action == "copy" and isinstance(parent, dict):
            parent[draw(key_names)] = _copy(parent[last])  # e.g. a group twice, renamed
    return name, tomli_w.dumps(document)


@st.composite
def mangled_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(name, text) of a shipped topology with lines deleted, duplicated or cut, or bytes
    changed: what a bad merge or a truncated copy leaves."""
    name = draw(st.sampled_from(sorted(SOURCES)))
    lines = SOURCES[name].splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(("delete", "dup", "cut", "char")))
        if action == "delete":
            del lines[i]
        elif action == "dup":
            lines.insert(i, lines[i])
        elif action == "cut":
            lines[i] = lines[i][: draw(st.integers(0, max(0, len(lines[i]) - 1)))]
        else:
            line = lines[i]
            j = draw(st.integers(0, len(line)))
            lines[i] = line[:j] + draw(st.characters(codec="utf-8")) + line[j + 1 :]
    return name, "\n".join(lines) + "\n"


def check_loads(name: str, text: str) -> Topology | None:
    source = f"fuzz/{name}"
    try:
        return loads(text, source=source)
    except TopologyError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{source}: "), message
        assert isinstance(exc, FileKeyError) and exc.source == source
        return None


def fuzz_settings(examples: int) -> Any:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@fuzz_settings(250)
@given(mutated_documents())
def test_mutated_documents_load_or_give_one_clear_error(doc: tuple[str, str]) -> None:
    check_loads(*doc)


@fuzz_settings(150)
@given(mangled_texts())
def test_mangled_texts_load_or_give_one_clear_error(doc: tuple[str, str]) -> None:
    check_loads(*doc)


@fuzz_settings(25)
@given(mutated_documents() | mangled_texts())
def test_validate_exits_0_or_2_with_one_line_never_a_traceback(
    tmp_path_factory: pytest.TempPathFactory, doc: tuple[str, str]
) -> None:
    name, text = doc
    path = tmp_path_factory.mktemp("fuzz") / name
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["topology", "validate", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}"
    )
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(path) in lines[0], result.stderr


@pytest.mark.fuzz
@pytest.mark.timeout(3600)
@fuzz_settings(FUZZ_EXAMPLES)
@given(mutated_documents() | mangled_texts())
def test_many_mutated_topologies(doc: tuple[str, str]) -> None:
    check_loads(*doc)


def test_a_key_with_a_newline_is_named_on_one_line(tmp_path: Path) -> None:
    """Found by the fuzzer: a quoted TOML key may hold a newline (or a terminal escape), and
    the error naming it was two lines."""
    text = SOURCES["demo.toml"] + '\n["\\n\\u001b[2J"]\nname = "demo"\n'
    with pytest.raises(TopologyError) as info:
        loads(text, source="demo.toml")
    assert str(info.value) == (
        "demo.toml: \\n\\x1b[2J: unknown key; expected one of: addresses, cluster, defaults, "
        "group, node, tiers"
    )
    assert info.value.key == "\n\x1b[2J"  # the key itself, as written
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["topology", "validate", str(path)])
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "\x1b" not in result.stderr
