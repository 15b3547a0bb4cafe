"""Benchmarks: every dtwin figure is paired with its reference or a peer measured in the same
run, and the summary prints ratios (never absolute times as pass/fail: machines are noisy).

A benchmark joins a pair through ``benchmark.extra_info``: ``pair`` (a shared label) and
``role`` ('dtwin' or the baseline's name). Benchmarks that measured an error also record
``rel_l2_error``; they are listed in an error-vs-cost table.

    pytest bench --benchmark-enable --benchmark-json=bench.json
"""

from __future__ import annotations

from dtwin.benchmarking import format_ratios, ratios


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    benchmarks = [b for b in getattr(session, "benchmarks", []) if b.stats]
    if not benchmarks:
        return
    write = terminalreporter.write_line
    rows = ratios(benchmarks)
    if rows:
        write("")
        write("dtwin vs baselines measured in this run (median times; ratio = baseline / dtwin)")
        for line in format_ratios(rows):
            write(line)
    costed = [b for b in benchmarks if "rel_l2_error" in b.extra_info]
    if costed:
        write("")
        write(
            "error vs cost (mean relative L2 against the tight reference; "
            "cost for N neurons over the horizon)"
        )
        write(
            f"{'scheme':40s} {'mean err':>10s} {'max err':>10s} {'time':>10s} {'neuron-steps/s':>15s} "
            f"{'vs rush_larsen dt=0.01':>24s}"
        )
        base = next((b for b in costed if b.extra_info.get("baseline_scheme")), None)
        for b in sorted(costed, key=lambda b: b.stats.median):
            info = b.extra_info
            steps = info.get("neuron_steps")
            rate = f"{steps / b.stats.median:15.3g}" if steps else f"{'adaptive':>15s}"
            rel = ""
            if base is not None:
                rel = (
                    f"{base.extra_info['rel_l2_error'] / info['rel_l2_error']:7.0f}x accurate, "
                    f"{base.stats.median / b.stats.median:4.1f}x faster"
                )
            write(
                f"{info['scheme']:40s} {info['rel_l2_error']:10.2e} {info['max_rel_l2_error']:10.2e} "
                f"{b.stats.median * 1e3:8.1f}ms {rate} {rel:>24s}"
            )
