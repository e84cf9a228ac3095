"""Fault tests with real node processes (issue 8).

The chaos run: `runner` builds network namespaces, starts the nodes and their load (`load`),
plays a seeded fault schedule (`faults`) and waits for the mesh to agree; `checker` then reads
every store and history and checks the seven invariants of the reliability brief
(`test_chaos` is the short run, `bench/chaos.py` the long one). See docs/reliability.md.
"""
