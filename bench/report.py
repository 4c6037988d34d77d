"""Render bench/run_all.sh's results into docs/benchmarks.md and the plots docs/bench-t2.png, docs/bench-t3.png.

    python bench/report.py [RESULTS_DIR] [--doc docs/benchmarks.md] [--stdout]

RESULTS_DIR (default /tmp/imapd-bench/results) holds the *.txt outputs of run_all.sh (JSON lines among the
human tables) and machine.txt. Only the part of docs/benchmarks.md between ``<!-- report:begin -->`` and
``<!-- report:end -->`` is replaced; the hand-written text around it is kept. ``--stdout`` prints the
generated part instead. Plots need matplotlib (``pip install -e '.[bench]'``); without it they are skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import re
import statistics
import sys
from collections import defaultdict
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- report:begin -->", "<!-- report:end -->"
PEERS = ("dovecot", "pymap")
Row = dict[str, Any]


def load(out: str) -> dict[str, list[Row]]:
    """file stem -> JSON rows"""
    files: dict[str, list[Row]] = {}
    for path in sorted(glob.glob(os.path.join(out, "*.txt"))):
        rows = []
        with open(path) as f:
            for line in f:
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        rows.append(json.loads(line))
        files[os.path.splitext(os.path.basename(path))[0]] = rows
    return files


def machine(out: str) -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        with open(os.path.join(out, "machine.txt")) as f:
            lines = [ln[2:].strip() for ln in f if ln.startswith("# ")]
    except OSError:
        return info
    for ln in lines:
        key, _, rest = ln.partition(" ")
        if key in ("dovecot", "pymap", "command:", "tree:", "load:", "mem:"):
            info[key.rstrip(":")] = rest
        elif re.match(r"\d{4}-\d\d-\d\dT", key):
            info["date"] = key
            info["host"] = rest
    return info


def f(x: float | None, nd: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}" if nd else f"{x:.0f}"
    return f"{x:.{nd}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}"


def med(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


# ------------------------------------------------------------------------------------------------ T1
def t1(files: dict[str, list[Row]]) -> tuple[list[str], dict[str, Any]]:
    out: list[str] = []
    facts: dict[str, Any] = {}
    series = [("dovecot", "dovecot", "login"), ("ours", "ours", "login"), ("xstate", "ours", "xstate"),
              ("pymap", "pymap", "login")]
    rounds: dict[str, dict[int, dict[str, Row]]] = defaultdict(dict)
    for stem, rows in files.items():
        m = re.match(r"t1_(dovecot|ours|xstate|pymap)_(\d+)$", stem)
        if m:
            rounds[m.group(1)][int(m.group(2))] = {r["phase"]: r for r in rows if r.get("cache") == "warm"}
    present = [s for s in series if rounds.get(s[0])]
    if not present:
        return out, facts
    n_rounds = max(max(v) for v in rounds.values())
    out.append("### T1, warm: median of the total per round, ms (ratio to Dovecot's median of the same round)\n")
    out.append("| round | " + " | ".join(_t1_name(s) for s in present) + " |")
    out.append("|---" * (len(present) + 1) + "|")
    totals: dict[str, list[float]] = defaultdict(list)
    ratios: dict[str, list[float]] = defaultdict(list)
    for r in range(1, n_rounds + 1):
        cells = []
        d = rounds["dovecot"].get(r, {}).get("total", {}).get("median_ms")
        for key, _, _ in present:
            v = rounds[key].get(r, {}).get("total", {}).get("median_ms")
            if v is None:
                cells.append("-")
                continue
            totals[key].append(v)
            if key != "dovecot" and d:
                ratios[key].append(v / d)
                cells.append(f"{v:.2f} ({v / d:.2f})")
            else:
                cells.append(f"{v:.2f}")
        out.append(f"| {r} | " + " | ".join(cells) + " |")
    cells = []
    for key, _, _ in present:
        m = med(totals[key])
        facts[f"t1_warm_{key}"] = m
        facts[f"t1_warm_{key}_range"] = (min(totals[key]), max(totals[key])) if totals[key] else None
        if key != "dovecot" and ratios[key]:
            facts[f"t1_ratio_{key}"] = med(ratios[key])
            cells.append(f"**{m:.2f} ({med(ratios[key]):.2f})**")
        else:
            cells.append(f"**{f(m)}**")
    out.append("| **median of rounds** | " + " | ".join(cells) + " |")
    last = n_rounds
    p99 = [f"{_t1_name(s)} {rounds[s[0]][last]['total']['p99_ms']:.1f} ms" for s in present
           if rounds[s[0]].get(last, {}).get("total")]
    runs = {rounds[s[0]][last]["total"]["runs"] for s in present if rounds[s[0]].get(last, {}).get("total")}
    out.append(f"\np99 of the total (round {last}): " + ", ".join(p99) + ". Runs per round: "
               + ", ".join(f"{_t1_name(s)} {rounds[s[0]][last]['total']['runs']}" for s in present
                           if rounds[s[0]].get(last, {}).get("total")) + ".")
    del runs
    # phases: median over rounds of each phase's median
    out.append("\nPhase medians (median over the rounds; ms):\n")
    out.append("| phase | " + " | ".join(_t1_name(s) for s in present) + " |")
    out.append("|---" * (len(present) + 1) + "|")
    for ph in ("connect", "login", "select", "restore", "fetch", "logout"):
        vals = []
        for key, _, _ in present:
            xs = [rd[ph]["median_ms"] for rd in rounds[key].values() if ph in rd]
            vals.append(f(med(xs)) if xs else "-")
        if any(v != "-" for v in vals):
            out.append(f"| {ph} | " + " | ".join(vals) + " |")
    # cold
    cold = {}
    for key in ("dovecot", "ours", "xstate", "pymap"):
        rows = [r for r in files.get(f"t1_cold_{key}", []) if r.get("cache") == "cold"]
        if rows:
            cold[key] = {r["phase"]: r for r in rows}
    if cold:
        keys = [k for k in ("dovecot", "ours", "xstate", "pymap") if k in cold]
        out.append("\n### T1, cold: a fresh server process before each sample (index on disk, page cache warm), ms\n")
        out.append("| phase | " + " | ".join(_t1_name((k, "", "")) for k in keys) + " |")
        out.append("|---" * (len(keys) + 1) + "|")
        for ph in ("connect", "login", "select", "restore", "fetch", "logout", "total"):
            vals = [f(cold[k][ph]["median_ms"]) if ph in cold[k] else "-" for k in keys]
            if any(v != "-" for v in vals):
                name = "**total (median)**" if ph == "total" else ph
                out.append(f"| {name} | " + " | ".join(vals) + " |")
        d = cold.get("dovecot", {}).get("total", {}).get("median_ms")
        out.append("| ratio to Dovecot | " + " | ".join(
            ratio(cold[k]["total"]["median_ms"], d) if k != "dovecot" and "total" in cold[k] else "1"
            for k in keys) + " |")
        out.append("| samples | " + " | ".join(str(cold[k].get("total", {}).get("runs", "-")) for k in keys) + " |")
        for k in keys:
            facts[f"t1_cold_{k}"] = cold[k].get("total", {}).get("median_ms")
    return out, facts


def _t1_name(s: tuple[str, str, str]) -> str:
    return {"dovecot": "Dovecot", "ours": "ours, LOGIN + SELECT", "xstate": "ours, X-STATE RESTORE",
            "pymap": "pymap"}[s[0]]


# ------------------------------------------------------------------------------------------------ T2
def t2(files: dict[str, list[Row]]) -> tuple[list[str], dict[str, Any]]:
    rows = [r for r in files.get("t2", []) if r.get("bench") == "idle_sessions"]
    facts: dict[str, Any] = {"t2_rows": rows}
    if not rows:
        return [], facts
    out = ["### T2: server memory per idle session (LOGIN, SELECT INBOX, IDLE)\n",
           "| server | sessions | failed | set-up s | RSS before -> after, MiB | RSS / session | PSS / session | processes |",
           "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['label']} | {r['sessions']:,} | {r['failed']} | {r['setup_s']} | "
                   f"{r['rss_before'] / 2**20:.1f} -> {r['rss_after'] / 2**20:.1f} | "
                   f"{r['rss_per_session_bytes'] / 1024:,.2f} KiB | {r['pss_per_session_bytes'] / 1024:,.2f} KiB | "
                   f"{r['processes_before']} -> {r['processes_after']} |")
    ours = [r for r in rows if r["label"] == "ours"]
    if ours:
        big = max(ours, key=lambda r: r["sessions"])
        facts["t2_ours_sessions"] = big["sessions"]
        facts["t2_ours_rss"] = big["rss_per_session_bytes"]
        facts["t2_ours_pss"] = big["pss_per_session_bytes"]
    for peer in PEERS:
        pr = [r for r in rows if r["label"] == peer]
        if pr:
            big = max(pr, key=lambda r: r["sessions"])
            facts[f"t2_{peer}_sessions"] = big["sessions"]
            facts[f"t2_{peer}_pss"] = big["pss_per_session_bytes"]
            facts[f"t2_{peer}_rss"] = big["rss_per_session_bytes"]
    out.append("\nPer session = (after - before) / sessions; Dovecot forks an imap process per session, so its "
               "figure that counts is PSS summed over its process tree (its summed RSS counts shared pages once "
               "per process). Ours and pymap are one process each: RSS.")
    return out, facts


# ------------------------------------------------------------------------------------------------ T3
def t3(files: dict[str, list[Row]]) -> tuple[list[str], dict[str, Any]]:
    out: list[str] = []
    facts: dict[str, Any] = {}
    data: dict[str, dict[int, Row]] = {}
    for srv in ("ours", *PEERS):
        rows = files.get(f"t3_imap_{srv}", [])
        if rows:
            data[srv] = {r["messages"]: r for r in rows}
    facts["t3"] = data
    if data:
        servers = [s for s in ("ours", *PEERS) if s in data]
        sizes = sorted({n for d in data.values() for n in d})
        out.append("### T3 over IMAP (`bench/mailbox_size.py`): ms, ours / Dovecot / pymap (ratio ours/Dovecot)\n")
        out.append("| messages | SELECT cold | SELECT warm (median) | FETCH 1:* (FLAGS), first | FETCH 1:* (FLAGS), median |")
        out.append("|---|---|---|---|---|")
        for n in sizes:
            cells = []
            for key in ("select_cold_ms", "select_warm_ms", "fetch_flags_first_ms", "fetch_flags_ms"):
                vals = []
                for s in servers:
                    r = data[s].get(n)
                    vals.append("n/a" if r is None or r.get("unavailable") else f(r[key]))
                o = data.get("ours", {}).get(n, {})
                d = data.get("dovecot", {}).get(n, {})
                cells.append(" / ".join(vals) + f" ({ratio(o.get(key), d.get(key))})")
            out.append(f"| {n:,} | " + " | ".join(cells) + " |")
        out.append("\nServer memory during `FETCH 1:* (FLAGS)` (RSS sampled every 2 ms; Dovecot: its whole "
                   "process tree):\n")
        out.append("| server | messages | response | RSS before | RSS peak | growth | growth / response |")
        out.append("|---|---|---|---|---|---|---|")
        for s in servers:
            for n in sizes:
                r = data[s].get(n)
                if r is None or r.get("unavailable"):
                    continue
                out.append(f"| {s} | {n:,} | {r['response_bytes'] / 1e6:.2f} MB | {r['rss_before'] / 2**20:.1f} MiB | "
                           f"{r['rss_peak'] / 2**20:.1f} MiB | {r['rss_growth'] / 2**20:.2f} MiB | {r['growth_ratio']} |")
        missing = [(s, n, data[s].get(n, {}).get("reason")) for s in servers for n in sizes
                   if n not in data[s] or data[s][n].get("unavailable")]
        for s, n, why in missing:
            out.append(f"\n{s}, {n:,} messages: not measured ({why or 'no result in this run'}).")
    store = files.get("t3_store", [])
    if store:
        by: dict[int, dict[str, Row]] = defaultdict(dict)
        for r in store:
            by[r["messages"]][r["metric"]] = r
        out.append("\n### T3 at the store level (`bench/store_scale.py`, ours only)\n")
        out.append("| messages | first index ms | open cold ms | sync no-op ms | index memory B/msg |")
        out.append("|---|---|---|---|---|")
        for n in sorted(by):
            m = by[n]
            out.append(f"| {n:,} | {f(m['first_index_ms']['value'])} | {f(m['open_cold_ms']['value'])} | "
                       f"{m['sync_noop_ms']['value']} | {m['memory_bytes']['per_message']} |")
    return out, facts


# ------------------------------------------------------------------------------------------------ T4
def t4(files: dict[str, list[Row]]) -> tuple[list[str], dict[str, Any]]:
    data: dict[str, dict[str, Row]] = {}
    for srv in ("ours", *PEERS):
        rows = files.get(f"t4_{srv}", [])
        if rows:
            data[srv] = {r["phase"]: r for r in rows}
    facts: dict[str, Any] = {"t4": data}
    if not data:
        return [], facts
    servers = [s for s in ("ours", *PEERS) if s in data]
    out = ["### T4: throughput over one connection (`bench/throughput.py`)\n",
           "| phase | " + " | ".join(servers) + " | ratio ours/Dovecot |", "|---" * (len(servers) + 2) + "|"]
    for ph, label in (("append", "APPEND (~10 KB, LITERAL+ pipelined)"), ("fetch_body", "UID FETCH 1:* BODY.PEEK[]"),
                      ("search_header", "UID SEARCH HEADER SUBJECT"), ("search_subject", "UID SEARCH SUBJECT")):
        cells = []
        for s in servers:
            r = data[s].get(ph)
            if r is None or r.get("unavailable"):
                cells.append("n/a")
            elif ph.startswith("search"):
                cells.append(f"{r['msgs_per_s']:,.0f} msgs/s ({r['median_ms']:.0f} ms over {r['messages']:,}; "
                             f"{r['hits']:,} hits)")
            else:
                cells.append(f"{r['msgs_per_s']:,.0f} msgs/s, {r['mb_per_s']:.1f} MB/s ({r['messages']:,} msgs)")
        o, d = data.get("ours", {}).get(ph), data.get("dovecot", {}).get(ph)
        rt = ratio(o.get("msgs_per_s") if o else None, d.get("msgs_per_s") if d else None)
        out.append(f"| {label} | " + " | ".join(cells) + f" | {rt} |")
    searches = [(s, ph, data[s][ph]) for s in servers for ph in ("search_header", "search_subject") if ph in data[s]]
    firsts = "; ".join(f"{s} {ph.removeprefix('search_')} {r['first_ms']:.0f} ms" for s, ph, r in searches
                       if not r.get("unavailable"))
    if firsts:
        out.append(f"\nFirst SEARCH after SELECT on the connection: {firsts}. "
                   "The table gives the median of the following runs.")
    return out, facts


# ------------------------------------------------------------------------------------------------ T5
def t5(files: dict[str, list[Row]]) -> tuple[list[str], dict[str, Any]]:
    rows = files.get("t5", [])
    facts: dict[str, Any] = {"t5": rows}
    if not rows:
        return [], facts
    sizes = sorted({r["messages"] for r in rows})
    tok = {r["messages"]: r["value"] for r in rows if r["metric"] == "token_bytes"}
    out = ["### T5: the state string (`bench/xstate.py`, ours only)\n",
           "| messages (5 UID gaps) | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---" * (len(sizes) + 1) + "|",
           "| token bytes | " + " | ".join(str(tok.get(n, "-")) for n in sizes) + " |"]
    changes = sorted({r["changes"] for r in rows if r["metric"] == "restore_ms"})
    for ch in changes:
        cells = []
        for n in sizes:
            r = next((r for r in rows if r["metric"] == "restore_ms" and r["messages"] == n and r["changes"] == ch),
                     None)
            cells.append(f"{r['median']} (best {r['best']})" if r else "-")
        out.append(f"| RESTORE ms after {ch:,} changes | " + " | ".join(cells) + " |")
    facts["t5_token_max"] = max(tok.values()) if tok else None
    return out, facts


# ------------------------------------------------------------------------------------------------ verdicts
def verdicts(facts: dict[str, Any]) -> list[str]:
    out = ["### Against the targets (this run)\n", "| target | figure | verdict |", "|---|---|---|"]

    def row(target: str, figure: str, ok: bool | None) -> None:
        out.append(f"| {target} | {figure} | {'met' if ok else 'missed' if ok is not None else 'not measured'} |")

    x, d = facts.get("t1_warm_xstate"), facts.get("t1_warm_dovecot")
    if x and d:
        row("T1 X-STATE warm: median <= 1.5 ms and >= 5x faster than Dovecot",
            f"{x:.2f} ms, {d / x:.1f}x faster", x <= 1.5 and d / x >= 5)
    r = facts.get("t1_ratio_ours")
    if r:
        row("T1 LOGIN + SELECT warm: <= 0.5x Dovecot", f"{r:.2f}x (median of the rounds' ratios)", r <= 0.5)
    co, cd = facts.get("t1_cold_ours"), facts.get("t1_cold_dovecot")
    if co and cd:
        row("T1 LOGIN + SELECT cold: <= 1.5x Dovecot", f"{co:.1f} vs {cd:.1f} ms: {co / cd:.2f}x", co / cd <= 1.5)
    rss, n = facts.get("t2_ours_rss"), facts.get("t2_ours_sessions")
    if rss is not None:
        row(f"T2 <= 4 KB RSS per idle session at 10,000 (run: {n:,})", f"{rss:,} B", rss <= 4000 and n >= 10_000)
    big = facts.get("t3", {}).get("ours", {}).get(100_000)
    if big and not big.get("unavailable"):
        row("T3 SELECT of 100,000 cold <= 150 ms", f"{big['select_cold_ms']:.1f} ms", big["select_cold_ms"] <= 150)
        row("T3 SELECT of 100,000 warm <= 2 ms", f"{big['select_warm_ms']:.2f} ms", big["select_warm_ms"] <= 2)
        row("T3 FETCH 1:* (FLAGS) streams", f"RSS +{big['rss_growth'] / 2**20:.2f} MiB for a "
            f"{big['response_bytes'] / 1e6:.1f} MB response", big["growth_ratio"] < 0.25)
    tok = facts.get("t5_token_max")
    if tok:
        row("T5 state string <= 300 bytes at 100,000 messages with UID gaps", f"{tok} bytes", tok <= 300)
    t5r = [r for r in facts.get("t5", []) if r["metric"] == "restore_ms"]
    if t5r:
        by_n = {r["messages"]: r["median"] for r in t5r if r["changes"] == 10}
        if len(by_n) >= 2:
            lo, hi = min(by_n), max(by_n)
            row("T5 restore grows with changes, not mailbox size",
                f"10 changes: {by_n[lo]} ms at {lo:,}, {by_n[hi]} ms at {hi:,}", by_n[hi] <= 3 * max(by_n[lo], 0.5))
    return out


# ------------------------------------------------------------------------------------------------ plots
COLORS = {"ours": "tab:blue", "dovecot": "tab:orange", "pymap": "tab:green"}


def plots(facts: dict[str, Any], docs: str) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report.py: matplotlib missing (pip install -e '.[bench]'): no plots", file=sys.stderr)
        return []
    made = []
    data = facts.get("t3", {})
    if data:
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        styles = {"select_cold_ms": ("SELECT cold", "o", "-"), "select_warm_ms": ("SELECT warm", "s", "--"),
                  "fetch_flags_ms": ("FETCH 1:* (FLAGS)", "^", ":")}
        for srv, rows in data.items():
            sizes = sorted(n for n, r in rows.items() if not r.get("unavailable"))
            for key, (label, marker, ls) in styles.items():
                ax.plot(sizes, [rows[n][key] for n in sizes], marker=marker, linestyle=ls, color=COLORS.get(srv),
                        label=f"{srv}: {label}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("messages in the mailbox")
        ax.set_ylabel("ms (client side, loopback)")
        ax.set_title("T3: SELECT and FETCH of all FLAGS vs mailbox size")
        ax.axhline(150, color="grey", linewidth=0.6)
        ax.axhline(2, color="grey", linewidth=0.6)
        ax.text(1000, 160, "cold target 150 ms", fontsize=7, color="grey")
        ax.text(1000, 2.15, "warm target 2 ms", fontsize=7, color="grey")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
        path = os.path.join(docs, "bench-t3.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    rows = facts.get("t2_rows", [])
    if rows:
        fig, ax = plt.subplots(figsize=(7.5, 4.8))
        for srv in ("ours", *PEERS):
            pr = sorted((r for r in rows if r["label"] == srv), key=lambda r: r["sessions"])
            if not pr:
                continue
            key = "pss" if srv == "dovecot" else "rss"
            # each run: one warm session (before) and 1 + N sessions (after)
            pts = sorted({(1, pr[0][f"{key}_before"])} | {(1 + r["sessions"], r[f"{key}_after"]) for r in pr})
            ax.plot([p[0] for p in pts], [p[1] / 2**20 for p in pts], marker="o", color=COLORS[srv],
                    label=f"{srv} ({key.upper()}{', process tree' if srv == 'dovecot' else ''})")
            for r in pr:
                ax.annotate(f"{r[f'{key}_per_session_bytes'] / 1024:,.1f} KiB/session",
                            (1 + r["sessions"], r[f"{key}_after"] / 2**20), fontsize=7,
                            textcoords="offset points", xytext=(-40, 6))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("idle sessions (LOGIN, SELECT INBOX, IDLE)")
        ax.set_ylabel("server memory, MiB")
        ax.set_title("T2: server memory vs idle sessions")
        ax.grid(True, which="both", linewidth=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(docs, "bench-t2.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made


# ------------------------------------------------------------------------------------------------ main
def render(out_dir: str, docs: str, with_plots: bool = True) -> str:
    files = load(out_dir)
    info = machine(out_dir)
    facts: dict[str, Any] = {}
    parts: list[list[str]] = []
    for fn in (t1, t2, t3, t4, t5):
        lines, fx = fn(files)
        facts.update(fx)
        if lines:
            parts.append(lines)
    head = [f"_Generated by `bench/report.py` from `{out_dir}` — do not edit between the markers._\n",
            "| | |", "|---|---|",
            f"| date (UTC) | {info.get('date', '?')} |",
            f"| machine | {info.get('host', '?')}, {info.get('mem', '?')}; load average at the start "
            f"{info.get('load', '?')} |",
            f"| command | `{info.get('command', 'bench/run_all.sh').strip()}` |",
            f"| server tree | {info.get('tree', '?')} |",
            f"| peers | Dovecot {info.get('dovecot', '?')}; pymap {info.get('pymap', '?')} (maildir backend) |",
            ""]
    body = head + verdicts(facts) + [""]
    for p in parts:
        body += [*p, ""]
    made = plots(facts, docs) if with_plots else []
    for path in made:
        name = os.path.basename(path)
        body.append(f"![{name}]({name})\n")
    return "\n".join(body).rstrip() + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", nargs="?", default="/tmp/imapd-bench/results")
    ap.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    ap.add_argument("--stdout", action="store_true")
    args = ap.parse_args()
    text = render(args.results, os.path.dirname(os.path.abspath(args.doc)), with_plots=not args.stdout)
    if args.stdout:
        print(text)
        return
    with open(args.doc) as fh:
        doc = fh.read()
    if BEGIN in doc and END in doc:
        pre, _, rest = doc.partition(BEGIN)
        _, _, post = rest.partition(END)
        doc = pre + BEGIN + "\n" + text + END + post
    else:
        doc = doc.rstrip() + "\n\n## Latest run\n\n" + BEGIN + "\n" + text + END + "\n"
    with open(args.doc, "w") as fh:
        fh.write(doc)
    print(f"report.py: wrote {args.doc}")


if __name__ == "__main__":
    main()
