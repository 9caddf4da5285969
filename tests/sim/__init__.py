"""Randomized runs of the real thing (issue 10 §3): seeded rounds of file operations on real ``oaiod run``
daemons of two users against a real ``oaiod hub serve``, with faults between and during rounds, then an oracle
that checks convergence and that nothing a user wrote was lost.

- :mod:`sim.hubproc` — the hub as a process of its own, so it can be ``kill -9``-ed and restarted on its port;
- :mod:`sim.faultproxy` — a loopback HTTP proxy per device that passes, drops, delays, resets and answers 5xx;
- :mod:`sim.workload` — the seeded plan: rounds of operations and faults, and applying one operation to a disk;
- :mod:`sim.oracle` — the ledger of written and destroyed contents, and the checks after the run;
- :mod:`sim.driver` — one run of a plan, and shrinking a failing plan to a minimal one.
"""
