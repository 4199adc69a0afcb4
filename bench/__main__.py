"""`python -m bench`: run the benchmarks, print a table, and end with one JSON line.

    python -m bench                  # full run (~25 minutes on a 2-core VM)
    python -m bench --quick          # about 10 minutes, same figures, shorter windows
    python -m bench --markdown BENCHMARKS.md   # also write the figures there
    python -m bench --from-json r.json --markdown BENCHMARKS.md   # re-render a saved run
    python -m bench soak ...         # bench/soak.py, when present
    python -m bench attack ...       # bench/attack.py, when present
    python -m bench realistic ...    # Graph's documented delays: webhook vs entrabot polling
    python -m bench documents [--quick]   # docx and pdf read throughput alone
    python -m bench promises [--seconds S]   # the clock's idle cost with 1,000 pending promises
    python -m bench eventhub [--quick]   # Event Hubs beside webhook: latency, throughput, idle (AMQP too)
    python -m bench floors           # this machine's floors alone, measured once (crypto, loopback, commit, pipe, imports)
    python -m bench hotpath [--batch B]   # cProfile of the webhook-to-push path, in-process (bench/hotpath.py)

stdout: the table, then the last line, a JSON object with every figure (for
comparing commits). Progress goes to stderr; logs of the sandbox and the runtimes
go to files in the work directory. Benchmarks print numbers; they assert nothing.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

_SUBCOMMANDS = ("soak", "attack", "realistic", "documents", "promises", "eventhub", "floors", "hotpath")


def _dispatch(name: str, argv: list[str]) -> int:
    if importlib.util.find_spec(f"bench.{name}") is None:
        print(f"bench: `{name}` is not available in this checkout (bench/{name}.py is missing)", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{name}")
    if inspect.iscoroutinefunction(module.main):
        import anyio

        result = anyio.run(module.main, argv)
    else:
        result = module.main(argv)
    if isinstance(result, dict):  # a report: its "ok" decides the exit code
        return 0 if result.get("ok", True) else 1
    return int(result or 0)


def _clean(value: Any) -> Any:
    """JSON has no NaN: missing figures become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in _SUBCOMMANDS:
        return _dispatch(argv[0], argv[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short windows: the whole run in about 10 minutes")
    parser.add_argument("--workdir", type=Path, help="keep state and logs here (default: a fresh temp dir)")
    parser.add_argument("--markdown", type=Path, help="also write the figures to this file (e.g. BENCHMARKS.md)")
    parser.add_argument("--json", type=Path, help="also write the full results (every sample summary) here")
    parser.add_argument("--from-json", type=Path, metavar="PATH",
                        help="run nothing: print (and --markdown) the results a previous --json saved")
    args = parser.parse_args(argv)

    import anyio

    from . import report
    from .harness import quiet_logging
    from .run import FULL, QUICK, run

    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        root = args.workdir or Path(tempfile.mkdtemp(prefix="agentseat-bench-"))
        root.mkdir(parents=True, exist_ok=True)
        quiet_logging(root.parent / f"{root.name}-bench.log")
        results = _clean(anyio.run(run, QUICK if args.quick else FULL, root))
    results["figures"] = _clean(report.figures(results))
    print(report.table(results))
    if args.markdown:
        old = args.markdown.read_text() if args.markdown.exists() else ""
        args.markdown.write_text(report.markdown(results, keep_from=old))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print(json.dumps({"profile": results["profile"], "machine": results["machine"], **results["figures"],
                      "details": {k: results.get(k) for k in ("latency", "throughput", "idle", "cold_start", "rss",
                                                               "hotpath", "pyspy", "floors", "floors_start",
                                                               "floors_end", "gates", "clock")}},
                     separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
