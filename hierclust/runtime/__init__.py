"""The runtime: real agents over UDP. The only I/O layer; it adds no protocol logic.

Theory of operation
-------------------
A :class:`~hierclust.runtime.driver.NodeDriver` runs one :class:`~hierclust.core.node.Node`: it
feeds ``node.step(time.monotonic_ns(), input)`` with datagrams (opened by the codec), timer expiries
(``loop.call_at``, one handle per key), loop-lag reports and commands, and carries out the effects
in order: ``Send`` -> codec -> UDP, ``SetTimer``/``CancelTimer`` -> timer handles,
``Persist`` -> state file (temp, fsync, rename, fsync directory) *before* the next effect (the
write runs in the host's persist threads; the node's later effects wait in order, the event loop
and the other nodes do not), ``Emit`` -> the :class:`~hierclust.runtime.events.EventBus`
(subscribers and a JSON-lines log).
A :class:`~hierclust.runtime.host.NodeHost` runs many drivers in one event loop (optionally uvloop);
``hierclust deploy`` starts several hosts as background worker processes, ``hierclust agent`` one
node in the foreground. Each worker serves a unix control socket (JSON lines) that ``status``,
``kill``, ``pause``, ``partition`` and the demo use.

Operator notes
--------------
- **Keyring.** Datagrams are signed with the cluster keyring. If the topology sets
  ``cluster.secret_file`` (relative to the topology file), that file is used; otherwise ``deploy``
  (and ``agent``) generate ``keyring.toml`` in the state directory, once, mode 0600. Nodes on
  several hosts need the same file: set ``cluster.secret_file`` for multi-host installations.
  Rotate keys by editing the file in the three steps of :mod:`hierclust.codec.keyring` and running
  ``hierclust reload-keyring`` after each step.
- **Durable state.** ``nodes/<name>.json`` holds the incarnation and the votes; a restart bumps the
  incarnation and keeps the votes. ``deploy`` creates the files before the first boot, so a
  missing file later means the state was lost. Such an *amnesiac* node boots with a wall-clock
  incarnation and stays mute for two election timeouts plus a lease (2.2 s by default) so that
  elections it may have voted in are over. This is a runtime guard, not a proof: a node that forgot
  its vote could still vote again in the same term if a lagging candidate starts that very term
  after the quarantine; closing that needs the core (e.g. refusing votes until it has heard the
  group's current term).
- **Sequence numbers** start from the wall clock in microseconds, so a restarted node's datagrams
  are never mistaken for replays by peers that remember its previous run.
- **ICMP port unreachable** becomes ``Unreachable(dst)`` through ``IP_RECVERR`` and the socket's
  error queue (Linux, default asyncio loop). It is opportunistic: only a node that sends to a dead
  port hears of it, at its next received datagram (asyncio-dgram reports errors on ``recv``).
  uvloop crashes on such sockets, so under uvloop (the deploy default above 256 nodes) the
  shortcut is off and failures are found by timeouts only.
- **Boot pacing.** A host boots 8 nodes, then lets its loop run for 20 ms: booting hundreds of
  nodes in one go made their first elections coincide and, on a loaded box, never settle.
- **Tie-breakers** (:mod:`hierclust.runtime.tiebreak`). Witnesses on 127.0.0.1 run inside worker
  ``w0`` of a deploy; on their own, ``hierclust witness --topology FILE`` serves those whose
  address is on its host (loopback or an address of one of its interfaces); each needs its
  state file (a new deploy creates it, ``hierclust witness --init`` for a foreground one) and
  writes it before it answers. A disk tie-breaker's lease file is read and replaced atomically
  by the nodes themselves under ``flock`` on ``FILE.lock`` (its directory must exist; relative
  paths are relative to the topology file); its expiry is judged on each node's own monotonic
  clock.
- **Agents** (``hierclust agent``, one node per process) have no deploy to create their state
  file, so a first boot is treated like a lost state directory: the node is mute for the
  quarantine above before it joins.
- **Status** definitions are in :mod:`hierclust.runtime.status`; one node's own view
  (``members --from``, ``quorum --from``) in :mod:`hierclust.runtime.view`.
"""
