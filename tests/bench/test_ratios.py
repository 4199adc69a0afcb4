"""Issue 16's goals as ratios: the arithmetic of bench/ratios.py, its place in the report, the
floors taken at both ends of a run (bench/run.py), and the floors measured for real (no figure
is asserted, only that each was measured)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from bench import floors, ratios, report, run


def _floors(crypto_us: float = 300.0, import_s: float = 0.8) -> dict[str, Any]:
    return {"crypto_us": crypto_us,
            "crypto": {"runtime_decrypt_us": crypto_us - 50, "runtime_token_verify_us": 50.0, "raw_us": 280.0},
            "loopback": {"round_trip_us": 150.0}, "commit": {"commit_us": 30.0},
            "pipe": {"write_and_parse_us": 20.0}, "imports": {"import_s": import_s, "python_s": 0.03}}


def _paced(sum_us: float) -> dict[str, Any]:
    quarter = sum_us / 4
    return {"loopback_us": quarter, "crypto_us": quarter, "commit_us": quarter, "pipe_us": quarter, "sum_us": sum_us,
            "period_s": 0.1, "samples": 100}


def _start_and_end() -> tuple[dict[str, Any], dict[str, Any]]:
    """Floors at a run's start, and at its end on a machine grown slower meanwhile."""
    start = {**_floors(crypto_us=300.0, import_s=0.8), "paced": _paced(2000.0)}
    end = {**_floors(crypto_us=340.0, import_s=0.9), "paced": _paced(2400.0), "loopback": {"round_trip_us": 170.0}}
    for floor in (start, end):
        floor["commit"] |= {"journal_mode": "wal", "samples": 300}
    return start, end


def _figures(**given: Any) -> dict[str, Any]:
    base = {"own_overhead_p99_ms": 1.2, "throughput_batch1_items_per_s": 2000.0,
            "throughput_batch1_cpu_ms_per_item": 0.5, "throughput_batch1_two_processes_items_per_s": 1500.0,
            "throughput_batch1_two_processes_cpu_ms_per_item": 0.9, "throughput_batch20_items_per_s": 2500.0,
            "throughput_batch20_cpu_ms_per_item": 0.33, "cold_start_first_event_s": 0.9}
    return {**base, **given}


def _judged(r: dict[str, Any], f: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    both = {**f, **ratios.figures(r, f)}
    short = {"own_overhead_p99": "own", "throughput_batch1": "batch 1", "throughput_batch1_two_processes": "batch 1 x2",
             "throughput_batch20": "batch 20", "cold_start": "cold"}
    return both, {short[key]: g.verdict for key, g in zip(ratios.GOAL_KEYS, ratios.goals(both), strict=True)}


def test_floor_sums_and_ratios() -> None:
    f = {**_figures(), **ratios.figures({"floors": _floors()}, _figures())}
    assert f["floor_overhead_us"] == 500.0  # 300 + 150 + 30 + 20
    assert f["floor_crypto_bound_items_per_s"] == 3333  # 1 / 300 us
    assert f["ratio_own_overhead_p99_vs_floor"] == 2.4  # 1,200 us / 500 us
    assert f["ratio_throughput_batch1_vs_crypto_bound"] == round(2000 / 3333, 3)
    assert f["ratio_cpu_per_item_batch1_vs_crypto"] == round(500 / 300, 2)
    assert f["cold_start_budget_s"] == 1.2  # 1.5 x 0.8 s is above the 1 s floor
    assert f["ratio_cold_start_vs_import_floor"] == round(0.9 / 0.8, 2)


def test_each_goal_passes_and_misses_at_its_bound() -> None:
    r = {"floors": _floors()}
    _, verdicts = _judged(r, _figures())
    assert verdicts == {"own": "PASS", "batch 1": "PASS", "batch 1 x2": "MISS", "batch 20": "MISS", "cold": "PASS"}
    f = ratios.figures(r, _figures())
    assert [f[f"floor_goal_{k}"] for k in ratios.GOAL_KEYS] == ["PASS", "PASS", "MISS", "MISS", "PASS"]
    # 3x the 500 us floor is 1.5 ms; 50 % and 80 % of 3,333/s are 1,667 and 2,667/s.
    _, verdicts = _judged(r, _figures(own_overhead_p99_ms=1.6, throughput_batch1_items_per_s=1600.0,
                                      throughput_batch1_two_processes_items_per_s=1700.0,
                                      throughput_batch20_items_per_s=2700.0, cold_start_first_event_s=1.3))
    assert verdicts == {"own": "MISS", "batch 1": "MISS", "batch 1 x2": "PASS", "batch 20": "PASS", "cold": "MISS"}


def test_a_run_without_the_two_process_ladder_leaves_that_goal_unjudged() -> None:
    given = {k: v for k, v in _figures().items() if "two_processes" not in k}
    _, verdicts = _judged({"floors": _floors()}, given)
    assert verdicts["batch 1 x2"] == "n/a" and verdicts["batch 1"] == "PASS"


def test_own_overhead_is_judged_against_the_floors_at_the_runs_pace() -> None:
    paced = {"loopback_us": 900.0, "crypto_us": 800.0, "commit_us": 200.0, "pipe_us": 100.0, "sum_us": 2000.0,
             "period_s": 0.1}
    r = {"floors": {**_floors(), "paced": paced}}
    f, verdicts = _judged(r, _figures(own_overhead_p99_ms=5.5))
    assert f["floor_own_overhead_us"] == 2000.0 and f["floor_overhead_us"] == 500.0
    assert f["ratio_own_overhead_p99_vs_floor"] == 2.75  # 5,500 us / 2,000 us: within 3x
    assert f["ratio_own_overhead_p99_vs_hot_floor"] == 11.0  # and shown against the hot sum too
    assert verdicts["own"] == "PASS"
    assert ratios.figures(r, _figures(own_overhead_p99_ms=6.5))["floor_goal_own_overhead_p99"] == "MISS"
    own = ratios.goals(f)[0]
    assert "at the run's pace" in own.what and "11x the hot floor 0.5 ms" in own.measured
    assert any("at the latency run's pace" in line and "sum 2000 us" in line for line in ratios.floor_lines(f))


def test_cold_start_budget_is_never_under_one_second() -> None:
    f, verdicts = _judged({"floors": _floors(import_s=0.4)}, _figures(cold_start_first_event_s=0.95))
    assert f["cold_start_budget_s"] == 1.0  # 1.5 x 0.4 s = 0.6 s, so the 1 s bound holds
    assert verdicts["cold"] == "PASS"


def test_missing_figures_are_not_judged() -> None:
    f, verdicts = _judged({}, {})
    assert math.isnan(f["floor_overhead_us"]) and math.isnan(f["ratio_own_overhead_p99_vs_floor"])
    assert set(verdicts.values()) == {"n/a"}


def test_report_states_each_goal_with_both_figures() -> None:
    r = {"profile": "quick", "machine": {"cpu": "test cpu", "cores": 2, "ram_gb": 4, "python": "3.11", "os": "Linux"},
         "floors": _floors(), "latency": {"webhook": {"own_overhead_ms": {"p99": 1.2}}},
         "throughput": {"batch1": {"max_zero_loss_items_per_s": 2000, "at_max": {"cpu_ms_per_item": 0.5}},
                        "batch20": {"max_zero_loss_items_per_s": 2500, "at_max": {"cpu_ms_per_item": 0.33}}},
         "cold_start": {"first_event_s": {"median": 0.9}}}
    f = report.figures(r)
    assert f["ratio_own_overhead_p99_vs_floor"] == 2.4
    text = report.table(r)
    assert "goals against the floors" in text
    assert "PASS  own overhead p99" in text and "2.4x: 1.2 ms vs floor 0.5 ms (budget 1.5 ms)" in text
    assert "MISS  zero-loss throughput, batch 20" in text and "75 %: 2500/s vs 3333/s" in text
    md = report.markdown(r)
    assert "## Floors and ratios" in md and "| **MISS** |" in md
    assert md.index("## Goals") < md.index("## Floors and ratios") < md.index("## Figures")


async def test_floors_are_measured_on_a_genuine_item(tmp_path: Path) -> None:
    """The crypto floor runs the runtime's decrypt and token check on a real item (they raise if it
    did not verify), and every floor comes back as a measured, positive figure."""
    got = await floors.measure(tmp_path, samples=5, paced_samples=3, import_repeat=1)
    for value in (got["crypto_us"], got["crypto"]["raw_us"], got["loopback"]["round_trip_us"],
                  got["commit"]["commit_us"], got["pipe"]["write_and_parse_us"], got["imports"]["import_s"]):
        assert value > 0
    assert got["commit"]["journal_mode"] == "wal"
    assert got["crypto"]["rsa_bits"] == 2048
    paced = got["paced"]  # the same four, one of each per period
    assert all(paced[f"{part}_us"] > 0 for part in ("loopback", "crypto", "commit", "pipe"))
    assert paced["sum_us"] == round(sum(paced[f"{part}_us"] for part in ("loopback", "crypto", "commit", "pipe")), 1)
    assert (paced["samples"], paced["period_s"]) == (3, floors.PACE_S)
    assert got["crypto_bound_items_per_s"] == round(1e6 / got["crypto_us"])
    for setup in ("one_thread", "two_threads", "two_processes"):  # every worker decrypted, in its own process too
        assert got["parallel_decrypt"][f"{setup}_per_s"] > 0 and got["parallel_decrypt"][f"{setup}_cores"] > 0
    assert set(got["crypto"]["raw"]) == {"rsa_oaep_unwrap_us", "hmac_sha256_us", "aes_cbc_decrypt_us",
                                         "rs256_verify_us"}


def test_markdown_keeps_the_hand_written_sections() -> None:
    r = {"profile": "quick", "machine": {"cpu": "test cpu", "cores": 2, "ram_gb": 4, "python": "3.11", "os": "Linux"},
         "floors": _floors()}
    old = "# Benchmarks\n\n## Goals\n\nold\n\n## Realistic profile (x)\n\nreal\n\n## Soak (y)\n\nsoak\n"
    md = report.markdown(r, keep_from=old)
    assert "## Realistic profile (x)\n\nreal" in md and "## Soak (y)\n\nsoak" in md
    assert md.count("## Floors and ratios") == 1


def test_floors_measured_at_both_ends_judge_by_their_mean() -> None:
    start, end = _start_and_end()
    fl = ratios.mean_floors(start, end)
    assert fl["crypto_us"] == 320.0 and fl["crypto"]["runtime_decrypt_us"] == 270.0
    assert fl["loopback"]["round_trip_us"] == 160.0 and fl["imports"]["import_s"] == 0.85
    assert fl["paced"]["sum_us"] == 2200.0 and fl["paced"]["period_s"] == 0.1
    assert fl["crypto_bound_items_per_s"] == 3125  # 1 / the mean crypto, not the mean of 3,333 and 2,941/s
    assert fl["commit"] == {"commit_us": 30.0, "journal_mode": "wal", "samples": 300}  # settings stay as they were
    r = {"floors": fl, "floors_start": start, "floors_end": end}
    f = ratios.figures(r, _figures(own_overhead_p99_ms=5.5))
    assert (f["floor_crypto_us"], f["floor_crypto_us_start"], f["floor_crypto_us_end"]) == (320.0, 300.0, 340.0)
    assert (f["floor_overhead_us"], f["floor_overhead_us_start"], f["floor_overhead_us_end"]) == (530.0, 500.0, 560.0)
    assert (f["floor_import_s_start"], f["floor_import_s_end"]) == (0.8, 0.9)
    assert f["ratio_own_overhead_p99_vs_floor"] == 2.5  # 5,500 us / the mean paced floor, 2,200 us
    assert f["ratio_cpu_per_item_batch1_vs_crypto"] == round(500 / 320, 2)
    assert f["cold_start_budget_s"] == 1.275  # 1.5 x 0.85 s
    assert f["floor_end_error"] is None


def test_report_shows_start_and_end_beside_each_floor() -> None:
    start, end = _start_and_end()
    r = {"profile": "quick", "machine": {"cpu": "test cpu", "cores": 2, "ram_gb": 4, "python": "3.11", "os": "Linux"},
         "floors": ratios.mean_floors(start, end), "floors_start": start, "floors_end": end}
    lines = ratios.floor_lines(ratios.figures(r, _figures()))
    assert lines[0].startswith("crypto per notification (runtime's functions) 320 us (start 300, end 340, +13.3 %): ")
    assert "loopback HTTP round trip (aiohttp, keep-alive) 160 us (start 150, end 170, +13.3 %)" in lines[2]
    assert "commit (WAL, NORMAL) 30 us (start 30, end 30, +0.0 %)" in lines[2]
    assert lines[3] == "sum (crypto + loopback + commit + pipe) 530 us (start 500, end 560, +12.0 %)"
    assert lines[4].endswith("sum 2200 us (start 2000, end 2400, +20.0 %)")
    assert "import floor (fresh Python + aiohttp + mcp SDK) 0.85 s (start 0.8, end 0.9, +12.5 %)" in lines[5]
    both = "measured at the start and at the end of this run (the goals are judged against their mean)"
    assert f"floors of this machine (medians), {both}" in report.table(r)
    md = report.markdown(r)
    assert f"The floors (bench/floors.py, medians), {both}:" in md
    assert "- crypto per notification (runtime's functions) 320 us (start 300, end 340, +13.3 %)" in md


@pytest.mark.parametrize("shape", ["saved before the end was measured", "end measurement failed",
                                   "end never measured"])
def test_a_run_with_start_floors_only_is_judged_and_rendered_by_them(shape: str) -> None:
    start, _ = _start_and_end()
    r: dict[str, Any] = {"profile": "quick", "machine": {"cpu": "test cpu", "cores": 2, "ram_gb": 4,
                                                         "python": "3.11", "os": "Linux"}, "floors": start}
    if shape != "saved before the end was measured":
        r["floors_start"] = start
    if shape == "end measurement failed":
        r["floors_end"] = {"error": "RuntimeError: loopback server answered 500"}
    f = ratios.figures(r, _figures(own_overhead_p99_ms=5.5))
    assert f["floor_crypto_us"] == 300.0 and math.isnan(f["floor_crypto_us_end"])
    assert f["ratio_own_overhead_p99_vs_floor"] == 2.75  # 5,500 us / the start's paced floor, 2,000 us
    alone = ratios.figures({"floors": start}, _figures(own_overhead_p99_ms=5.5))  # as before floors_start
    judged = [key for key in f if key.startswith(("ratio_", "floor_goal_"))]
    assert judged and {key: f[key] for key in judged} == {key: alone[key] for key in judged}
    lines = ratios.floor_lines(f)
    assert lines[0].startswith("crypto per notification (runtime's functions) 300 us: decrypt 250 us")
    assert not any("(start " in line for line in lines)
    text = report.table(r)
    if shape == "end measurement failed":
        assert ("floors of this machine (medians), measured at the start of this run only "
                "(the end measurement failed: RuntimeError: loopback server answered 500)") in text
    else:
        assert "floors of this machine (medians), measured at the start of this run\n" in text
    assert "## Floors and ratios" in report.markdown(r)


@pytest.mark.parametrize("profile", [run.QUICK, run.FULL], ids=lambda p: p.name)
async def test_floors_are_measured_again_at_the_end_with_the_same_samples(
        profile: run.Profile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start, end = _start_and_end()
    calls: list[tuple[str, dict[str, Any]]] = []

    async def measure(root: Path, **samples: Any) -> dict[str, Any]:
        calls.append((root.name, samples))
        return end if root.name == "floors-end" else start

    monkeypatch.setattr(floors, "measure", measure)
    out: dict[str, Any] = {}
    await run.floors_phase(profile, tmp_path, out)
    assert out["floors"] == out["floors_start"] == start  # judged by the start until the end is in
    await run.floors_again_phase(profile, tmp_path, out)
    assert [name for name, _ in calls] == ["floors", "floors-end"]
    assert calls[0][1] == calls[1][1] == {"samples": floors.SAMPLES[profile.name],
                                          "paced_samples": floors.PACED_SAMPLES[profile.name],
                                          "import_repeat": max(profile.import_repeat, 2)}
    assert out["floors_start"] == start and out["floors_end"] == end
    assert out["floors"] == ratios.mean_floors(start, end)


async def test_a_failed_end_measurement_leaves_the_start_floors_judging(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start, _ = _start_and_end()

    async def measure(root: Path, **_: Any) -> dict[str, Any]:
        if root.name == "floors-end":
            raise RuntimeError("loopback server answered 500")
        return start

    monkeypatch.setattr(floors, "measure", measure)
    out: dict[str, Any] = {}
    await run.floors_phase(run.QUICK, tmp_path, out)
    await run.floors_again_phase(run.QUICK, tmp_path, out)
    assert out["floors"] == out["floors_start"] == start
    assert out["floors_end"] == {"error": "RuntimeError: loopback server answered 500"}
    assert ratios.figures(out, {})["floor_end_error"] == "RuntimeError: loopback server answered 500"
