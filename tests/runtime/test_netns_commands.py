"""How the lab runs a command on a host: the command lines alone (no root, nothing is run)."""

from __future__ import annotations

import shlex

import pytest

from hierclust.runtime import netns
from hierclust.runtime.netns import CLOCK_OFFSETS_S, NetnsLab


def test_every_host_command_enters_its_namespace_and_its_clock() -> None:
    lab = NetnsLab("lab", 7, "10.9.0")
    assert lab.command(2, ["sleep", "1"]) == [
        *("ip", "netns", "exec", "lab-10.9.0.3"),
        *("unshare", "--time", "--monotonic", "100000", "--boottime", "100000"),
        *("sleep", "1"),
    ]
    # the default offsets cycle over the hosts
    assert [lab.clock_offset_s(h) for h in range(7)] == [*CLOCK_OFFSETS_S, 0, 7]
    assert NetnsLab("lab", 3, offsets_s=(5,)).clock_offset_s(2) == 5
    with pytest.raises(ValueError, match="offsets_s"):
        NetnsLab("lab", 3, offsets_s=(0, -1))


def test_the_exec_template_runs_the_same_command_for_the_host_clustershell_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lab = NetnsLab("lab", 5, "10.9.0", offsets_s=(0, 30, 600))
    ran: list[list[str]] = []
    monkeypatch.setattr(netns.os, "execvp", lambda _file, argv: ran.append(list(argv)))
    for host in range(5):
        # what ClusterShell's exec worker does with the template: %h -> the host's address
        line = shlex.split(lab.exec_template.replace("%h", lab.address(host)))
        assert line[1:3] == ["-m", "hierclust.runtime.netns"]
        netns.main([*line[3:], "sh", "-c", "echo $$"])
        assert ran[-1] == lab.command(host, ["sh", "-c", "echo $$"])


def test_the_exec_template_refuses_a_host_outside_the_lab(
    capsys: pytest.CaptureFixture[str],
) -> None:
    lab = NetnsLab("lab", 2, "10.9.0")
    line = shlex.split(lab.exec_template.replace("%h", "10.8.0.1"))
    with pytest.raises(SystemExit) as exit_info:
        netns.main([*line[3:], "true"])
    assert exit_info.value.code == 2
    assert "--host 10.8.0.1: not an address of subnet 10.9.0" in capsys.readouterr().err
