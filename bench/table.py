#!/usr/bin/env python3
"""Prints bench/results.json as the Markdown tables of BENCHMARKS.md (standard library only).

Usage: table.py results.json > results.md
"""

import json
import sys


def number(value, digits=0):
    return "-" if value is None else f"{value:,.{digits}f}"


def main(source):
    with open(source) as f:
        r = json.load(f)
    m, o = r.get("machine", {}), r.get("options", {})
    print(
        f"Run of {o.get('date', '')[:16]} UTC: {m.get('cores')} cores ({m.get('cpu')}), {m.get('memory_gb')} GB, "
        f"PostgreSQL {m.get('postgres', '').split(' ')[0]}, load average at start {m.get('load_average_at_start')}; "
        f"{o.get('seconds_per_run')} s per run, {o.get('rounds')} round(s){', quick' if o.get('quick') else ''}.\n"
    )
    print("| scenario | conns | target | req/s | p50 ms | p99 ms | max ms | errors | peak RSS MB | x baseline req/s | x baseline p99 |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"handout": "hand-out", "initiate": "POST /initiate", "list": "GET /integrations (4)"}
    for c in r.get("cells", []):
        scenario = names.get(c["scenario"], c["scenario"])
        if c.get("ids"):
            scenario += f", {c['ids']:,} integration{'s' if c['ids'] > 1 else ''}"
        for row in c["rows"]:
            print(
                f"| {scenario} | {c['connections']} | {row['target']} | {number(row['rps'])} | {number(row['p50_ms'], 2)} "
                f"| {number(row['p99_ms'], 2)} | {number(row['max_ms'], 1)} | {row['errors']} | {number(row['peak_rss_mb'], 1)} "
                f"| {number(row.get('ratio_rps'), 2)} | {number(row.get('ratio_p99'), 2)} |"
            )
    flow, storm, start, idle = r.get("flow"), r.get("storm"), r.get("start_to_ready"), r.get("idle_refresher")
    print()
    if flow:
        print(
            f"- Connect flow, {flow['in_flight']} in flight: {number(flow['flows_per_second'])} flows/s, "
            f"{flow['failures']} failures, flow p50 {number(flow['p50_ms'])} ms, p99 {number(flow['p99_ms'])} ms; "
            f"peak RSS {number(flow.get('peak_rss_mb'), 1)} MB; cores: service {number(flow['cores']['service'], 2)}, "
            f"bench drivers + emulators {number(flow['cores']['bench_drivers_and_emulators'], 2)}, "
            f"PostgreSQL {number(flow['cores']['postgres'], 2)}."
        )
    if storm:
        answers = ", ".join(f"{n} x {k}" for k, n in storm.get("answers", {}).items())
        print(
            f"- Refresh storm, {storm['integrations']:,} integrations, provider {number(storm['provider_delay_ms'])} ms per refresh: "
            f"provider saw all refreshes after {number(storm.get('all_refreshed_at_provider_seconds'), 1)} s; "
            f"emulator count {storm['emulator_refreshes']:,}; answers {answers}; last answer {number(storm['last_answer_seconds'], 1)} s; "
            f"worst wait of a fresh hand-out {number(storm['worst_wait_ms'])} ms; others {number(storm['others_rps_before'])} -> "
            f"{number(storm['others_rps_during'])} req/s ({number(storm['others_ratio'], 2)}x); peak RSS {number(storm['peak_rss_mb'], 1)} MB "
            f"({number(storm.get('rss_with_connections_open_mb'), 1)} MB with its connections open)."
        )
    if start:
        print(
            f"- Start to ready: median {number(start['median_ms'])} ms "
            f"({', '.join(number(t) for t in start['runs_ms'])})."
        )
    if idle:
        print(
            f"- Idle refresher, 200,000 integrations, every token due, {number(idle['rounds'])} rounds: "
            f"{idle['calls_beyond_keep_alive']} provider calls and {idle['audit_rows_beyond_keep_alive']} audit rows beyond keep-alives, "
            f"{idle['keep_alive_calls']} keep-alive calls; per hour (x 60 rounds): {number(idle['beyond_keep_alive_calls_per_hour'])} + "
            f"{number(idle['keep_alive_calls_per_hour'])} keep-alive calls (steady state {number(idle['keep_alive_steady_state_per_hour'])}/h)."
        )
    print("\n| target | measured | status |\n|---|---|---|")
    for t in r.get("targets", []):
        print(f"| {t['target']} | {t['measured']} | {t['status']} |")


if __name__ == "__main__":
    main(sys.argv[1])
