"""Goals as ratios against this machine's floors (issue 16, point 1): the arithmetic and its lines.

The floors come from bench/floors.py in the same run, measured at its start and again at its
end (bench/run.py). The goals are judged against the mean of the two (`mean_floors`), with both
shown beside it, because the machine drifts: the crypto floor read 385, 446 and 468 us in three
full runs within 80 minutes (BENCHMARKS.md). The figures they judge are the ones report.py
already draws from that run (own overhead p99 from the webhook latency phase,
zero-loss throughput and CPU per item from the throughput ladder, the median cold start to
the first pushed event). Each goal is stated with both figures and their ratio:

- own overhead p99 <= 3 x (crypto + loopback + commit + pipe), the four measured at the
  latency run's pace (one notification's worth every 1/10 s, bench/floors.py `paced`): the p99
  comes from messages that arrive alone, to a machine idle in between, where each of the four
  costs several times its hot median. The hot sum and the ratio to it are shown beside;
  a run without the paced floors is judged against the hot sum;
- zero-loss throughput at batch 1 >= 50 % of the one-core crypto-bound rate (1 / crypto),
  which is CPU per item <= 2 x the crypto;
- at batch 20 >= 80 % of it;
- cold start to the first pushed event <= max(1.5 x the import floor, 1 s).

Pure functions over dicts: no timing here, so tests/bench/ can check the arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

OVERHEAD_FACTOR = 3.0
BATCH1_SHARE = 0.5
BATCH20_SHARE = 0.8
COLD_START_FACTOR = 1.5
COLD_START_MIN_S = 1.0


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any) -> float:
    return float(value) if _is_num(value) else math.nan


def _get(data: Any, *path: str) -> float:
    for key in path:
        if not isinstance(data, dict) or data.get(key) is None:
            return math.nan
        data = data[key]
    return _num(data)


def _div(a: float, b: float, digits: int = 3) -> float:
    return round(a / b, digits) if b and not math.isnan(a) and not math.isnan(b) else math.nan


def _mean(start: Any, end: Any) -> Any:
    if isinstance(start, dict) and isinstance(end, dict):
        return {key: _mean(start[key], end[key]) if key in start and key in end else start.get(key, end.get(key))
                for key in {**start, **end}}
    if _is_num(start) and _is_num(end):
        both = (start + end) / 2
        return round(both) if isinstance(start, int) and isinstance(end, int) else round(both, 4)
    return start  # a setting, not a measurement (journal mode, import code): the same at both ends


def mean_floors(start: dict[str, Any], end: dict[str, Any]) -> dict[str, Any]:
    """The floors a run is judged against: bench/floors.py's dict, each figure the mean of its
    value at the run's start and at its end.

    The mean of the two medians rather than the median of the pooled samples: floors.measure
    keeps only medians (a full run's 2,000 samples a floor would swell the JSON), and the mean
    weighs both ends alike, as the phases judged ran all through the time between them. Sums
    stay sums; the crypto-bound rate and the decrypt speedups are ratios, so they are worked
    out again from the means.
    """
    out = _mean(start, end)
    crypto_us = out.get("crypto_us")
    if _is_num(crypto_us) and crypto_us:
        out["crypto_bound_items_per_s"] = round(1e6 / crypto_us)
    scaling = out.get("parallel_decrypt")
    if isinstance(scaling, dict) and _is_num(one := scaling.get("one_thread_per_s")) and one:
        for setup in ("two_threads", "two_processes"):
            if _is_num(scaling.get(f"{setup}_per_s")):
                scaling[f"{setup}_speedup"] = round(scaling[f"{setup}_per_s"] / one, 2)
    return out


#: The floors shown with their start and end values beside them (`<key>_start`, `<key>_end`).
DRIFTING = ("floor_crypto_us", "floor_loopback_us", "floor_commit_us", "floor_pipe_us", "floor_overhead_us",
            "floor_paced_sum_us", "floor_import_s")


def _floor_figures(fl: dict[str, Any]) -> dict[str, Any]:
    """One set of floors (bench/floors.py's dict), flat."""
    out: dict[str, Any] = {
        "floor_crypto_us": _get(fl, "crypto_us"),
        "floor_crypto_decrypt_us": _get(fl, "crypto", "runtime_decrypt_us"),
        "floor_crypto_token_verify_us": _get(fl, "crypto", "runtime_token_verify_us"),
        "floor_crypto_raw_us": _get(fl, "crypto", "raw_us"),
        **{f"floor_crypto_raw_{k.removesuffix('_us')}_us": _get(fl, "crypto", "raw", k)
           for k in ("rsa_oaep_unwrap_us", "hmac_sha256_us", "aes_cbc_decrypt_us", "rs256_verify_us")},
        **{f"floor_decrypt_{setup}_{what}": _get(fl, "parallel_decrypt", f"{setup}_{what}")
           for setup in ("one_thread", "two_threads", "two_processes") for what in ("per_s", "cores")},
        "floor_loopback_us": _get(fl, "loopback", "round_trip_us"),
        "floor_commit_us": _get(fl, "commit", "commit_us"),
        "floor_pipe_us": _get(fl, "pipe", "write_and_parse_us"),
        "floor_import_s": _get(fl, "imports", "import_s"),
        "floor_python_s": _get(fl, "imports", "python_s"),
    }
    parts = [out[k] for k in ("floor_crypto_us", "floor_loopback_us", "floor_commit_us", "floor_pipe_us")]
    out["floor_overhead_us"] = round(sum(parts), 1) if not any(math.isnan(p) for p in parts) else math.nan
    for part in ("loopback", "crypto", "commit", "pipe", "sum"):
        out[f"floor_paced_{part}_us"] = _get(fl, "paced", f"{part}_us")
    out["floor_paced_period_s"] = _get(fl, "paced", "period_s")
    paced = out["floor_paced_sum_us"]
    out["floor_own_overhead_us"] = out["floor_overhead_us"] if math.isnan(paced) else paced
    crypto = out["floor_crypto_us"]
    out["floor_crypto_bound_items_per_s"] = round(1e6 / crypto) if crypto and not math.isnan(crypto) else math.nan
    return out


def figures(r: dict[str, Any], f: dict[str, Any]) -> dict[str, Any]:
    """Floors and ratios, flat (`floor_*`, `ratio_*`), from the run `r` and report.py's figures `f`.

    `r["floors"]` judges; `r["floors_start"]` and `r["floors_end"]`, when the run has them, give
    the `DRIFTING` floors' `_start` and `_end` values. A run from before they were kept, or one
    whose end measurement failed (`r["floors_end"]["error"]`), has NaN there.
    """
    out = _floor_figures(r.get("floors") or {})
    for when in ("start", "end"):
        measured = _floor_figures(r.get(f"floors_{when}") or {})
        out |= {f"{key}_{when}": measured[key] for key in DRIFTING}
    end = r.get("floors_end")
    out["floor_end_error"] = end.get("error") if isinstance(end, dict) else None
    crypto = out["floor_crypto_us"]
    own_us = _num(f.get("own_overhead_p99_ms")) * 1000
    out["ratio_own_overhead_p99_vs_floor"] = _div(own_us, out["floor_own_overhead_us"], 2)
    out["ratio_own_overhead_p99_vs_hot_floor"] = _div(own_us, out["floor_overhead_us"], 2)
    for batch, _ in THROUGHPUT_GOALS:
        # The ladder's next step, which failed: the zero-loss rate lies between the two.
        out[f"throughput_{batch}_first_failing_items_per_s"] = _get(r, "throughput", batch, "first_failing_items_per_s")
        out[f"ratio_throughput_{batch}_vs_crypto_bound"] = _div(_num(f.get(f"throughput_{batch}_items_per_s")),
                                                                out["floor_crypto_bound_items_per_s"])
        out[f"ratio_cpu_per_item_{batch}_vs_crypto"] = _div(_num(f.get(f"throughput_{batch}_cpu_ms_per_item")) * 1000,
                                                           crypto, 2)
    imports = out["floor_import_s"]
    out["cold_start_budget_s"] = (round(max(COLD_START_FACTOR * imports, COLD_START_MIN_S), 3)
                                  if not math.isnan(imports) else math.nan)
    out["ratio_cold_start_vs_import_floor"] = _div(_num(f.get("cold_start_first_event_s")), imports, 2)
    # The verdicts too, so the run's JSON line says PASS / MISS without re-deriving them.
    for key, goal in zip(GOAL_KEYS, goals({**f, **out}), strict=True):
        out[f"floor_goal_{key}"] = goal.verdict
    return out


#: The goals' keys in the JSON line (`floor_goal_<key>`), in the order `goals` states them.
GOAL_KEYS = ("own_overhead_p99", "throughput_batch1", "throughput_batch1_two_processes", "throughput_batch20",
             "cold_start")
#: Each throughput ladder and its share of the one-core crypto-bound rate. Batch 1 is judged twice: with
#: the runtime alone, and with a second process taking POSTs (AGENTSEAT_INTAKE_PROCESSES=2, issue 16
#: point 2: "beyond one core where a second process pays for itself"), whose CPU counts every process.
THROUGHPUT_GOALS = (("batch1", BATCH1_SHARE), ("batch1_two_processes", BATCH1_SHARE), ("batch20", BATCH20_SHARE))


_LABELS = {"batch1": "batch 1", "batch1_two_processes": "batch 1, two processes taking POSTs", "batch20": "batch 20"}


@dataclass(frozen=True)
class FloorGoal:
    """One goal against the floors: `ok` is None when a figure is missing (not measured this run)."""

    what: str
    goal: str
    measured: str  # absolute figures
    ratio: str  # the ratio the goal is stated in
    ok: bool | None

    @property
    def verdict(self) -> str:
        return "n/a" if self.ok is None else ("PASS" if self.ok else "MISS")


def _fmt(value: float, unit: str = "", digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{round(value, digits):g}{unit}"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value * 100:.0f} %"


def _judge(value: float, ok: bool) -> bool | None:
    return None if math.isnan(value) else ok


def goals(f: dict[str, Any]) -> list[FloorGoal]:
    """The four goals of issue 16 against the floors of the same run; `f` holds `figures`' keys
    and report.py's (own overhead, throughput, cold start)."""
    own_ms, floor_us = _num(f.get("own_overhead_p99_ms")), f["floor_own_overhead_us"]
    ratio = f["ratio_own_overhead_p99_vs_floor"]
    at_pace = not math.isnan(f["floor_paced_sum_us"])
    hot = (f"; {_fmt(f['ratio_own_overhead_p99_vs_hot_floor'], 'x', 2)} the hot floor "
           f"{_fmt(f['floor_overhead_us'] / 1000, ' ms')}") if at_pace else ""
    rows = [FloorGoal(
        "own overhead p99 vs crypto + loopback + commit + pipe" + (" at the run's pace" if at_pace else ""),
        f"<= {OVERHEAD_FACTOR:g}x",
        f"{_fmt(own_ms, ' ms')} vs floor {_fmt(floor_us / 1000, ' ms')} "
        f"(budget {_fmt(floor_us * OVERHEAD_FACTOR / 1000, ' ms')}){hot}",
        f"{_fmt(ratio, 'x', 2)}", _judge(ratio, ratio <= OVERHEAD_FACTOR))]
    bound = f["floor_crypto_bound_items_per_s"]
    for batch, share in THROUGHPUT_GOALS:
        rate = _num(f.get(f"throughput_{batch}_items_per_s"))
        got = f[f"ratio_throughput_{batch}_vs_crypto_bound"]
        cpu = f[f"ratio_cpu_per_item_{batch}_vs_crypto"]
        capped = " (generator cap: a lower bound)" if f.get(f"throughput_{batch}_capped") else ""
        failing = _num(f.get(f"throughput_{batch}_first_failing_items_per_s"))
        if not capped and not math.isnan(failing):
            capped = f" (next step {_fmt(failing, '/s')} failed)"
        rows.append(FloorGoal(
            f"zero-loss throughput, {_LABELS[batch]}, vs the one-core crypto-bound rate",
            f">= {share:.0%}" + (" (CPU per item <= 2x crypto)" if batch == "batch1" else ""),
            f"{_fmt(rate, '/s')}{capped} vs {_fmt(bound, '/s')} (goal {_fmt(bound * share, '/s', 0)}); "
            f"CPU {_fmt(_num(f.get(f'throughput_{batch}_cpu_ms_per_item')) * 1000, ' us', 1)}/item = "
            f"{_fmt(cpu, 'x', 2)} crypto",
            _pct(got), _judge(got, got >= share)))
    first, budget = _num(f.get("cold_start_first_event_s")), f["cold_start_budget_s"]
    cold = f["ratio_cold_start_vs_import_floor"]
    rows.append(FloorGoal(
        "cold start to the first pushed event vs the import floor",
        f"<= max({COLD_START_FACTOR:g}x import floor, {COLD_START_MIN_S:g} s)",
        f"{_fmt(first, ' s')} vs budget {_fmt(budget, ' s')} (import floor {_fmt(f['floor_import_s'], ' s')})",
        f"{_fmt(cold, 'x', 2)} import floor", _judge(first, not math.isnan(budget) and first <= budget)))
    return rows


def _scaling(f: dict[str, Any], setup: str) -> str:
    return f"{_fmt(f[f'floor_decrypt_{setup}_per_s'], '', 0)} ({_fmt(f[f'floor_decrypt_{setup}_cores'], '', 2)})"


def _drift(f: dict[str, Any], key: str, unit: str, digits: int = 1) -> str:
    """The figure judged, and beside it the two it is the mean of: `412 us (start 401, end 423, +5.4 %)`;
    the figure alone when the run has no end measurement."""
    text = _fmt(_num(f.get(key)), unit, digits)
    start, end = _num(f.get(f"{key}_start")), _num(f.get(f"{key}_end"))
    if math.isnan(start) or math.isnan(end):
        return text
    change = f", {(end - start) / start * 100:+.1f} %" if start else ""
    return f"{text} (start {_fmt(start, '', digits)}, end {_fmt(end, '', digits)}{change})"


def _measured_when(f: dict[str, Any]) -> str:
    """When the floors were measured, and so what judges: both ends' mean, or the start alone."""
    if not math.isnan(_num(f.get("floor_crypto_us_end"))):
        return "at the start and at the end of this run (the goals are judged against their mean)"
    if f.get("floor_end_error"):
        return f"at the start of this run only (the end measurement failed: {f['floor_end_error']})"
    return "at the start of this run"


def floor_lines(f: dict[str, Any]) -> list[str]:
    """The floors themselves, one line each."""
    return [
        f"crypto per notification (runtime's functions) {_drift(f, 'floor_crypto_us', ' us')}: decrypt "
        f"{_fmt(f['floor_crypto_decrypt_us'], ' us', 1)} + one RS256 token check "
        f"{_fmt(f['floor_crypto_token_verify_us'], ' us', 1)}; raw cryptography "
        f"{_fmt(f['floor_crypto_raw_us'], ' us', 1)} (" + ", ".join(
            f"{label} {_fmt(f[f'floor_crypto_raw_{key}_us'], '', 1)}" for label, key in (
                ("RSA-OAEP unwrap", "rsa_oaep_unwrap"), ("HMAC", "hmac_sha256"), ("AES-CBC", "aes_cbc_decrypt"),
                ("RS256 verify", "rs256_verify"))) + ")",
        f"one-core crypto-bound rate {_fmt(f['floor_crypto_bound_items_per_s'], ' items/s', 0)}; decrypts/s "
        f"(cores used): one thread {_scaling(f, 'one_thread')}, two threads {_scaling(f, 'two_threads')}, "
        f"two processes {_scaling(f, 'two_processes')}",
        f"loopback HTTP round trip (aiohttp, keep-alive) {_drift(f, 'floor_loopback_us', ' us')}; "
        f"SQLite commit (WAL, NORMAL) {_drift(f, 'floor_commit_us', ' us')}; "
        f"pipe write + JSON parse {_drift(f, 'floor_pipe_us', ' us')}",
        f"sum (crypto + loopback + commit + pipe) {_drift(f, 'floor_overhead_us', ' us')}",
        f"the same four at the latency run's pace (one each {_fmt(f['floor_paced_period_s'], ' s')}): round trip "
        f"{_fmt(f['floor_paced_loopback_us'], ' us', 1)}, crypto {_fmt(f['floor_paced_crypto_us'], ' us', 1)}, "
        f"commit {_fmt(f['floor_paced_commit_us'], ' us', 1)}, pipe {_fmt(f['floor_paced_pipe_us'], ' us', 1)}; "
        f"sum {_drift(f, 'floor_paced_sum_us', ' us')}",
        f"import floor (fresh Python + aiohttp + mcp SDK) {_drift(f, 'floor_import_s', ' s', 3)}; "
        f"bare interpreter {_fmt(f['floor_python_s'], ' s')}",
    ]


def table_lines(f: dict[str, Any]) -> list[str]:
    """The block report.table prints: floors, then each goal with PASS / MISS."""
    lines = [f"floors of this machine (medians), measured {_measured_when(f)}"]
    lines += [f"   {line}" for line in floor_lines(f)]
    lines.append("goals against the floors")
    for g in goals(f):
        lines.append(f"   {g.verdict:4}  {g.what}: {g.goal}; measured {g.ratio}: {g.measured}")
    return lines


def markdown_lines(f: dict[str, Any], run: str) -> list[str]:
    """The "Floors and ratios" section of BENCHMARKS.md."""
    lines = ["## Floors and ratios", "",
             f"From {run}. The floors (bench/floors.py, medians), measured {_measured_when(f)}:", ""]
    lines += [f"- {line}" for line in floor_lines(f)]
    lines += ["", *goal_table(f), "", HOW, "",
              "The quick run's figures, what changed and why a goal still misses are in \"Quick run\" below."]
    return lines


#: How the floors are made, for BENCHMARKS.md.
HOW = """The floors are measured at the start of the run and again, with the same samples, at its
end, on the machine the run judges. The goals are judged against the mean of the two, with both
beside it: a shared machine drifts, and a floor taken once moves the ratios as much as the
figures they judge. A run without the end measurement (it failed, or the run predates it) is
judged against the start alone, as the line above the list says. The floors are: the crypto
with the runtime's own `KeyRing.decrypt` and `assess_tokens` (its verified-token cache off, so
each call verifies one RS256 signature) on a genuine rich item (2048-bit key, a chatMessage of
about 1.2 KB), beside the same four operations on `cryptography` alone; one aiohttp round trip
on 127.0.0.1 over a kept-alive connection (a 2 KB POST answered 202); one `BEGIN IMMEDIATE`,
`INSERT`, `COMMIT` in the inbox's mode (WAL, synchronous NORMAL, agentseat/storage.py); one
MCP-push-sized line written to a child's stdin and `json.loads`-ed there, one way; the same
four again, one of each every 1/10 s (the latency run's pace), for the own-overhead goal: its
p99 comes from messages that each arrive to an idle machine, where every step runs cold and
costs several times its hot median (the round trip about 10x on the VM below); and a fresh
interpreter importing aiohttp and the mcp SDK's server side, best of a few. The crypto-bound
rate is 1 / crypto: one core doing nothing else. The zero-loss rates come from a ladder that
doubles, then bisects three times, so the true rate lies between the highest passing step and
the failing step shown beside it. Own overhead ends when the client's stdio transport has read
and parsed the push (the floor's "pipe write + parse"); the client session's dispatch to its
handler is the host's and is reported apart in the latency table. Because the crypto floor is
the runtime's own decrypt and token check, making those faster lowers the floor as much as the
figure: the ratios measure everything around the crypto."""


def goal_table(f: dict[str, Any]) -> list[str]:
    """The goals against the floors as a markdown table."""
    lines = ["| goal | target | measured (absolute) | ratio | |", "|---|---|---|---|---|"]
    for g in goals(f):
        verdict = "**MISS**" if g.ok is False else g.verdict
        lines.append(f"| {g.what} | {g.goal} | {g.measured} | {g.ratio} | {verdict} |")
    return lines
