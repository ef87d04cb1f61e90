"""The results as a Markdown table (with sizes and profiles) and as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

NUMBERS = {"projection": 1, "live": "1c", "scale_out": "1b", "replay": 2, "catchup": "2b", "api": 3, "freshness": 4, "intake": 5, "insights": 6, "replicated": 7}


def _num(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN
        return "n/a"
    if isinstance(value, (int, float)):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if 0 < abs(value) < 0.1:
            return f"{value:.2g}"
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return str(value)


def _met(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "**no**")


def markdown(report: dict) -> str:
    m, g = report["machine"], report["git"]
    lines = [
        "# Benchmark results", "",
        f"Run {report['started_at']} on commit `{g['commit']}`"
        + (f" (with uncommitted changes to {', '.join(g['service_files_changed_since_commit'])})"
           if g["service_files_changed_since_commit"] else "")
        + f"; {m['cpus']} CPUs, Python {m['python']}, load average at start {m['loadavg_at_start']}; "
          f"total wall time {report['total_seconds']:.0f} s.",
        "", "Kafka, PostgreSQL, the services and the load generators share the machine. Each baseline "
            "was measured in the same run; ratios are oriented so that above 1 means better than the baseline "
            "(throughput: ours / baseline; latency: baseline / ours).", "",
        "| # | figure | value | baseline | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for b in report["benchmarks"]:
        n = NUMBERS.get(b["name"], "")
        if b.get("error"):
            lines.append(f"| {n} | {b['name']}: **failed**: {b['error']} | | | | | |")
        for r in b["rows"]:
            base = f"{_num(r['baseline'])} {r['unit']} ({r['baseline_label']})" if r["baseline"] is not None else ""
            note = f"<br><sub>{r['note']}</sub>" if r["note"] else ""
            lines.append(f"| {n} | {r['metric']}{note} | {_num(r['value'])} {r['unit']} | {base} | "
                         f"{_num(r['ratio']) if r['ratio'] is not None else ''} | {r['goal']} | {_met(r['met'])} |")
    lines += ["", "## Sizes", ""]
    for b in report["benchmarks"]:
        sizes = ", ".join(f"{k} = {_num(v) if isinstance(v, (int, float)) else v}" for k, v in b["sizes"].items())
        retried = " (second attempt: the shared infrastructure restarted during the first)" \
            if (b.get("details") or {}).get("attempt") == 2 else ""
        own = (b.get("details") or {}).get("run")  # run alone and merged (`bench.run --merge`)
        alone = f"; run alone on commit `{own['git']['commit']}` at {own['started_at']}" if own else ""
        lines.append(f"- **{NUMBERS.get(b['name'], '')}. {b['title']}** ({b['seconds']:.0f} s{retried}{alone}): {sizes}")
    lines += ["", "## Where the time goes (profiles of this run)", ""]
    for b in report["benchmarks"]:
        lines += _profiles(b)
    return "\n".join(lines) + "\n"


def _profiles(b: dict) -> list[str]:
    out: list[str] = []
    found = []
    d = b.get("details") or {}
    for key, label in (("profile", "py-spy"), ("worker_profile", "py-spy, worker"), ("api_profile", "py-spy, API")):
        if d.get(key):
            found.append((label, d[key]))
    for sub in ("projection", "intake"):
        if isinstance(d.get(sub), dict) and d[sub].get("profile"):
            found.append((f"py-spy, {sub} process", d[sub]["profile"]))
    if not found and not d.get("sql_profile"):
        return out
    out.append(f"**{NUMBERS.get(b['name'], '')}. {b['title']}**")
    out.append("")
    for label, prof in found:
        ours = "; ".join(f"{p['function']} {p['share']:.0%}" for p in prof["inclusive_ours"][:7])
        own = "; ".join(f"{p['function']} {p['share']:.0%}" for p in prof["self_time"][:6])
        out.append(f"- {label}: {prof['samples']} samples, {prof.get('busy_share', 1):.0%} of them busy. "
                   f"Share of the busy samples, service functions (inclusive): {ours}.")
        out.append(f"  Self time (any code): {own}.")
    if d.get("sql_profile"):
        sql = d["sql_profile"]
        out.append(f"- SQL (in the replay process): {sql['statements']:,} statements, {sql['seconds']} s waiting "
                   f"on them in total. Top by time:")
        for s in sql["top"][:6]:
            out.append(f"  - {s['seconds']} s, {s['count']:,} x {s['ms_each']} ms: `{s['sql']}`")
    out.append("")
    return out


def plot(report: dict, path: Path) -> Path | None:
    """Left: each goal's figure against the goal (1 = just met). Right: each figure against its
    baseline of the same run."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return None
    rows = [r for b in report["benchmarks"] for r in b["rows"]]
    goals = [r for r in rows if r.get("attainment")]
    ratios = [r for r in rows if r["ratio"] is not None]
    if not goals and not ratios:
        return None
    height = 0.45 * max(len(goals), len(ratios)) + 1.8
    fig, axes = plt.subplots(1, 2, figsize=(15, height))
    panels = ((axes[0], goals, "attainment", "figure against its goal (log; 1 = goal just met)"),
              (axes[1], ratios, "ratio", "figure against its baseline in the same run (log; >1 = better)"))
    for ax, items, key, xlabel in panels:
        if not items:
            ax.axis("off")
            continue
        values = [r[key] for r in items]
        colours = ["#2a9d8f" if r["met"] else "#e76f51" if r["met"] is False else "#8d99ae" for r in items] \
            if key == "attainment" else ["#5c7da8"] * len(items)
        ax.barh(range(len(items)), values, color=colours)
        ax.set_yticks(range(len(items)), [f"{NUMBERS.get(r['benchmark'], '')}. {r['metric']}" for r in items],
                      fontsize=8)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1, color="black", linewidth=0.8)
        ax.set_xlim(min(values + [1]) / 2, max(values + [1]) * 3)
        ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
        for i, v in enumerate(values):
            ax.text(v, i, f" {v:.3g}x", va="center", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=9)
    fig.suptitle(f"Benchmarks on commit {report['git']['commit']}, {report['machine']['cpus']} CPUs "
                 f"(left, green: goal met, red: missed)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
