"""Turn the raw timings into medians, ratios, a table, the targets' verdicts and plots."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Row", "paired_ratio", "plot", "rows_of", "table", "verdicts"]

MB = 1024 * 1024


@dataclass
class Row:
    """One variant of one case: its median, scaled to the workload's size when needed."""

    workload: str
    backend: str
    label: str
    n: int
    median: float  # seconds for ``n`` items, as measured
    scaled: float  # seconds for the workload's full size (per-item extrapolation if n < full)
    memory_mb: float | None
    reference: bool

    @property
    def extrapolated(self) -> bool:
        return self.scaled != self.median


def rows_of(case: dict[str, Any]) -> list[Row]:
    rows = []
    for label, times in case.get("times", {}).items():
        if not times:
            continue
        n = case["n"][label]
        median = statistics.median(times)
        memory = case.get("memory", {}).get(label) or []
        rows.append(Row(case["workload"], case["backend"], label, n, median,
                        median * case["full_n"] / n,
                        statistics.median(memory) / MB if memory else None,
                        label in case.get("reference", [])))
    return rows


def paired_ratio(case: dict[str, Any], a: Row, b: Row) -> float:
    """``a``'s time over ``b``'s: the median of the per-round ratios (per item).

    Variants alternate within each round, so the two runs of a round saw nearly the same
    machine load; the median of those paired ratios moves much less with a load that drifts
    over the run than the ratio of the two medians does.
    """
    ta, tb = case["times"].get(a.label, []), case["times"].get(b.label, [])
    if ta and len(ta) == len(tb):
        return statistics.median((x / a.n) / (y / b.n) for x, y in zip(ta, tb, strict=True))
    return a.scaled / b.scaled


def _best_direct(rows: list[Row]) -> Row | None:
    rivals = [r for r in rows if r.label != "anyexec" and not r.reference]
    return min(rivals, key=lambda r: r.scaled) if rivals else None


def table(cases: list[dict[str, Any]], starts: list[dict[str, Any]]) -> str:
    """A markdown table of every case: median seconds and anyexec's time over each variant's
    (the median of the per-round ratios, see ``paired_ratio``)."""
    lines = ["| workload | backend | variant | items | median s | anyexec / variant |",
             "|---|---|---|---:|---:|---:|"]
    for case in cases:
        if "error" in case:
            lines.append(f"| {case['workload']} | {case['backend']} | ERROR | | | "
                         f"{case['error'][:80]} |")
            continue
        rows = rows_of(case)
        ours = next((r for r in rows if r.label == "anyexec"), None)
        for row in rows:
            shown = f"{row.scaled:.4g}" + ("*" if row.extrapolated else "")
            ratio = "" if ours is None or row is ours else f"{paired_ratio(case, ours, row):.3g}"
            memory = ("" if row.memory_mb is None or row.workload != "stream"
                      else f" (+{row.memory_mb:.1f} MB)")
            lines.append(f"| {row.workload} | {row.backend} | {row.label}{memory} | "
                         f"{row.n} | {shown} | {ratio} |")
    for start in starts:
        if "error" in start:
            lines.append(f"| {start['workload']} | {start['backend']} | ERROR | | | "
                         f"{start['error'][:80]} |")
            continue
        base = start["medians"].get("anyexec")
        for label, median in start["medians"].items():
            ratio = "" if base is None or label == "anyexec" else f"{base / median:.3g}"
            lines.append(f"| {start['workload']} | {start['backend']} | {label} | 1 | "
                         f"{median:.4g} | {ratio} |")
    lines.append("")
    lines.append("`*`: measured on fewer items (column *items*) and scaled per item to the "
                 "workload's size. Stream rows show the parent's peak memory growth.")
    return "\n".join(lines)


def _find(cases: list[dict[str, Any]], workload: str, backend: str) -> dict[str, Any] | None:
    for case in cases:
        if case["workload"] == workload and case["backend"] == backend and "error" not in case:
            return case
    return None


def verdicts(cases: list[dict[str, Any]], starts: list[dict[str, Any]]) -> list[str]:
    """One line per target of the issue: PASS/FAIL and the measured ratio."""
    out: list[str] = []

    def say(ok: bool, text: str) -> None:
        out.append(f"{'PASS' if ok else 'FAIL'}  {text}")

    for case in cases:
        if "error" in case:
            out.append(f"ERROR {case['workload']} on {case['backend']}: {case['error'][:120]}")
            continue
        rows = rows_of(case)
        ours = next(r for r in rows if r.label == "anyexec")
        best = _best_direct(rows)
        wl, be = case["workload"], case["backend"]
        if wl in ("cpu", "sleep") and best is not None:
            ratio = paired_ratio(case, ours, best)
            say(ratio <= 1.05, f"{wl}/{be}: anyexec {ours.scaled:.3f} s vs best direct "
                               f"({best.label}) {best.scaled:.3f} s (medians), paired ratio "
                               f"{ratio:.3f}x (<= 1.05)")
        if wl == "cpu" and be == "processes":
            serial = next((r for r in rows if r.label == "serial loop"), None)
            if serial is not None:
                speedup = 1 / paired_ratio(case, ours, serial)
                say(speedup >= 1.9, f"cpu/processes: {speedup:.2f}x over the serial loop "
                                    "(paired) (>= 1.9)")
        if wl == "sleep":
            ideal = 0.5
            # The engine's own floor, for context: a miss it shares is the engine's, not ours.
            floor = f"; {best.label} directly {best.scaled:.3f} s" if best is not None else ""
            say(ours.scaled <= ideal * 1.05,
                f"sleep/{be}: anyexec {ours.scaled:.3f} s (<= {ideal * 1.05:.3f}){floor}")
        if wl == "tiny" and be == "processes":
            pool = next((r for r in rows if r.label == "Pool.map"), None)
            if pool is not None:
                ratio = paired_ratio(case, ours, pool)
                # The best times: what an idle machine shows (load only adds time, and on a
                # busy machine it pulls the paired ratios towards 1).
                best = min(case["times"]["anyexec"]) / min(case["times"]["Pool.map"])
                rounds = len(case["times"]["anyexec"])
                say(ratio <= 1.1, f"tiny/processes ({case['full_n']} calls): anyexec "
                                  f"{ours.scaled:.3f} s vs Pool.map {pool.scaled:.3f} s "
                                  f"(medians), paired ratio {ratio:.2f}x over {rounds} rounds "
                                  f"(<= 1.1), best times {best:.2f}x")
        if wl == "tiny" and be in ("ray", "dask"):
            per_item = next((r for r in rows if r.label.startswith(("one task", "client.map"))),
                            None)
            if per_item is not None:
                gain = per_item.scaled / ours.scaled
                say(gain >= 100, f"tiny/{be}: {gain:.0f}x faster than one engine task per item "
                                 f"({per_item.label} measured on {per_item.n} items, "
                                 "extrapolated) (>= 100)")
        if wl == "stream":
            _stream_verdicts(case, rows, ours, say)
    for start in starts:
        if "error" in start:
            continue
        medians = start["medians"]
        if start["workload"] == "import":
            took = medians["anyexec"]
            say(took < 0.030, f"import anyexec {took * 1000:.1f} ms (< 30 ms)")
            engines = start.get("engines") or []
            say(not engines, f"import anyexec imports no engine ({', '.join(engines) or 'none'})")
        if start["workload"] == "first result" and start["backend"] == "processes":
            direct = medians.get("processes directly")
            if direct:
                ratio = medians["anyexec"] / direct
                say(ratio <= 1.2, f"first result on processes: {ratio:.2f}x a bare process pool "
                                  "(<= 1.2)")
    return out


def _stream_verdicts(case: dict[str, Any], rows: list[Row], ours: Row, say: Any) -> None:
    be = case["backend"]
    if be == "processes":
        imap = next((r for r in rows if r.label.startswith("Pool.imap")), None)
        if imap is not None:
            ratio = paired_ratio(case, ours, imap)
            say(ratio <= 1.5, f"stream/processes ({case['full_n']} items): {ratio:.2f}x "
                              f"Pool.imap chunksize=1000 (<= 1.5)")
    if ours.memory_mb is not None:
        say(ours.memory_mb < 20, f"stream/{be}: parent memory growth {ours.memory_mb:.1f} MB "
                                 "(< 20)")
    stall = case.get("extra", {}).get("stall", {}).get("anyexec")
    if stall is not None:
        window = stall.get("window_items")
        ahead = stall["pulled_ahead"]
        ok = stall["grew_while_stalled"] == 0 and window is not None and ahead <= window
        say(ok, f"stream/{be}: consumer stalled after {stall['consumed']} results: input "
                f"{ahead} items ahead (window {window}), grew by {stall['grew_while_stalled']} "
                "while stalled")


def plot(cases: list[dict[str, Any]], starts: list[dict[str, Any]], folder: Path) -> list[Path]:
    """One PNG per workload: median seconds of every variant on every backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[str, float, bool]]] = {}
    for case in cases:
        for row in rows_of(case) if "error" not in case else []:
            star = "*" if row.extrapolated else ""
            groups.setdefault(row.workload, []).append(
                (f"{row.backend}: {row.label}{star}", row.scaled, row.label == "anyexec"))
    for start in starts:
        for label, median in start.get("medians", {}).items():
            groups.setdefault(start["workload"], []).append(
                (f"{start['backend']}: {label}", median, label == "anyexec"))
    written = []
    folder.mkdir(parents=True, exist_ok=True)
    for workload, bars in groups.items():
        fig, ax = plt.subplots(figsize=(8, 0.35 * len(bars) + 1.2))
        labels = [b[0] for b in bars]
        ax.barh(range(len(bars)), [b[1] for b in bars],
                color=["tab:orange" if b[2] else "tab:blue" for b in bars])
        ax.set_yticks(range(len(bars)), labels, fontsize=8)
        ax.invert_yaxis()
        spread = max(b[1] for b in bars) / max(min(b[1] for b in bars), 1e-9)
        if spread > 30:
            ax.set_xscale("log")
        ax.set_xlabel("median seconds (orange: anyexec; *: extrapolated per item)")
        ax.set_title(f"anyexec benchmarks: {workload}")
        fig.tight_layout()
        path = folder / f"{workload.replace(' ', '_')}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
