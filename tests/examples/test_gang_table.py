"""The gang scheduler's job table (fencing check, compare-and-set, atomic replace), its jobs
file, and its command line against a running deployment."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from hierclust.api import FencingToken
from tests.examples.gang import EXAMPLE, deployment, example, write_jobs

gang = example()


def token(term: int, leader: str = "cn02", group: str = "t") -> FencingToken:
    return FencingToken(term=term, group=group, leader=leader)


def test_a_smaller_term_is_refused_and_the_file_keeps_the_largest(tmp_path: Path) -> None:
    table = gang.JobTable(tmp_path / "table.json")
    empty = table.read()
    assert empty["version"] == 0 and empty["token"] is None
    first = table.write({**empty, "jobs": {"a": {"state": "queued"}}}, token(5), 0)
    assert first["version"] == 1 and first["token"]["term"] == 5
    again = table.write(first, token(5), 1)  # the same leader, the same term: fine
    assert again["version"] == 2
    newer = table.write({**again, "jobs": {}}, token(9, "cn07"), 2)
    with pytest.raises(gang.StaleToken, match="term 9"):
        table.write({**again, "jobs": {"stale": {}}}, token(5), 3)
    with pytest.raises(gang.StaleToken):  # one term, two leaders: never both
        table.write(newer, token(9, "cn11"), 3)
    stored = table.read()
    assert stored == newer and stored["jobs"] == {}
    assert [t["term"] for t in stored["tokens"]] == [5, 9]
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


def test_a_write_based_on_an_old_version_is_a_conflict(tmp_path: Path) -> None:
    table = gang.JobTable(tmp_path / "table.json")
    base = table.read()
    table.write(base, token(3), 0)
    with pytest.raises(gang.Conflict, match="at version 1, not 0"):
        table.write(base, token(4), 0)
    assert table.read()["token"]["term"] == 3


def test_another_groups_token_or_a_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    table = gang.JobTable(path)
    table.write(table.read(), token(3), 0)
    with pytest.raises(gang.GangError, match="another --table"):
        table.write(table.read(), token(4, group="other"), 1)
    path.write_text("{half", encoding="utf-8")
    with pytest.raises(gang.GangError, match=rf"{path}: not JSON"):
        table.read()
    path.write_text("[]", encoding="utf-8")
    with pytest.raises(gang.GangError, match="not a job table"):
        table.read()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("nope", "not JSON"),
        ('{"job": []}', "expected a list of jobs"),
        ('[{"name": "a", "duration": 1}, {"name": "a", "duration": 1}]', r"jobs\[1\]\.name"),
        ('[{"name": "a", "groups": 0, "duration": 1}]', r"jobs\[0\]\.groups"),
        ('[{"name": "a", "duration": "1"}]', r"jobs\[0\]\.duration"),
        ('[{"name": "a", "duration": 1, "nodes": 4}]', "unknown key 'nodes'"),
    ],
)
def test_bad_jobs_files_name_the_file_and_key(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "jobs.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(gang.GangError, match=message) as info:
        gang.load_jobs(path)
    assert str(path) in str(info.value)


async def run_cli(*args: str, timeout: float = 25.0) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.asyncio
async def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    code, _, err = await run_cli("--state-dir", str(tmp_path), "--jobs", str(tmp_path / "no.json"))
    assert code == 2 and "no.json: cannot read the jobs file" in err
    jobs = tmp_path / "jobs.json"
    write_jobs(jobs, [{"name": "a", "duration": 1}])
    code, _, err = await run_cli("--state-dir", str(tmp_path / "none"), "--jobs", str(jobs))
    assert code == 2 and "none: no such state directory" in err, err


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_cli_runs_the_jobs_against_a_deployment(tmp_path: Path) -> None:
    async with deployment(tmp_path) as (agent, topology, _clients):
        jobs = tmp_path / "jobs.json"
        write_jobs(
            jobs,
            [
                {"name": "wide", "groups": 3, "duration": 0.5},
                {"name": "narrow", "groups": 1, "duration": 0.5},
                {"name": "after", "groups": 4, "duration": 0.3},
            ],
        )
        state = str(agent.state_dir)
        code, out, err = await run_cli(
            "--state-dir", state, "--jobs", str(jobs), "--tick", "0.1", "--until-done", "--json"
        )
        assert code == 0, err
        summary = json.loads(out.splitlines()[-1])
        assert summary["table"] == str(agent.state_dir / "gang-table.json")
        jobs_out = summary["jobs"]
        assert {n: j["state"] for n, j in jobs_out.items()} == dict.fromkeys(jobs_out, "done")
        wide, narrow = jobs_out["wide"]["runs"][0], jobs_out["narrow"]["runs"][0]
        assert len(wide["groups"]) == 3 and len(narrow["groups"]) == 1
        assert not set(wide["groups"]) & set(narrow["groups"])
        assert jobs_out["after"]["runs"][0]["start"] >= max(wide["end"], narrow["end"])
        leaves = {g.name for g in topology.leaves}
        assert set(jobs_out["after"]["runs"][0]["groups"]) == leaves
        # a table that is not one: a clear error naming it, exit 2
        broken = tmp_path / "broken.json"
        broken.write_text("{", encoding="utf-8")
        code, _, err = await run_cli(
            "--state-dir", state, "--jobs", str(jobs), "--table", str(broken), "--tick", "0.1"
        )
        assert code == 2 and f"{broken}: not JSON" in err, err
