"""Sweeps that produce every number of the write-up: Table 1 and the figures (see ARCHITECTURE.md).

``python -m simulations <experiment>`` runs one experiment and writes ``paper/data/<name>.json``
with its configuration, seed, machine, date, the load beside its timings and the fingerprint of
the code that made it (:mod:`simulations.common`); ``all`` runs every one of them and
``--quick`` shrinks each to a smoke-test size (the JSON then says ``"quick": true``).

* ``table1``   the attack on each public challenge variant (paper Table 1);
* ``scaling``  attack time and share matched against N, beside the per-pair assignment method;
* ``stages``   share matched after every stage, boosting rounds included (paper §2.2.3);
* ``psim``     p-sim's ROC and balanced accuracy (paper §2.1.1);
* ``examples`` a few originals, their encodings and the originals the attack matched them to;
* ``speedup``  the speed-up benchmark's numbers (``benchmarks/speedup.py``);
* ``theory``   the theory experiments (:mod:`theory.experiments`).

The figures and tables are drawn from these files alone by ``python -m paper``.
"""
