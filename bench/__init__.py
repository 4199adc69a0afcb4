"""agentseat's benchmarks: latency, throughput, idle cost and cold start against the sandbox.

Run them with `python -m bench` (see bench/__main__.py); figures of the latest full run
are in BENCHMARKS.md.
"""
