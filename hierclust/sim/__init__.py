"""The deterministic simulator: the real protocol core under a virtual clock, a modelled network
and injected faults, with safety checkers, ready-made scenarios and swarm fuzzing."""
