"""Failure-propagation benchmarks: ``hierclust bench`` (issue 6).

Theory of operation
-------------------
A benchmark run boots a cluster, measures a steady window, crashes one victim and records when
each survivor learned of the crash. Every run produces one report (docs/architecture.md §5)
(:data:`hierclust.sim.scenario.REPORT_FIELDS`); a benchmark writes
``{"runs": [...], "summary": {...}}`` where the summary holds the per-field medians
(:mod:`hierclust.bench.report`, pure functions).

- ``sim`` (:mod:`hierclust.bench.sim`): the deterministic simulator, one seed per repeat.
- ``udp`` (:mod:`hierclust.bench.udp`): real agents on 127.0.0.1 deployed by the runtime; times
  from the workers' JSON-lines event logs, all on ``time.monotonic_ns()`` (one host, one clock).
- ``serf`` (:mod:`hierclust.bench.serf`): N HashiCorp Serf agents in a network namespace made for
  the run, so the namespace's UDP counters count exactly Serf's datagrams; a failure is the
  moment each agent's ``EventMemberFailed`` log line is read (same monotonic clock).
- ``sweep`` (:mod:`hierclust.bench.sweep`) repeats a mode over sizes; :mod:`hierclust.bench.plots`
  draws CDFs and sweep curves (matplotlib, Agg backend).
"""
