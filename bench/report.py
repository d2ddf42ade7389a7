"""Run the kernelkit benchmarks and print ratio tables as markdown.

    python bench/report.py                # full run (a few minutes), markdown on stdout
    python bench/report.py --quick        # fewer rounds
    python bench/report.py -k 4096x1024   # pytest -k passthrough
    python bench/report.py --json run.json          # keep pytest-benchmark's raw JSON
    python bench/report.py --from-json run.json     # re-render a kept run, no benchmarking
    python bench/report.py --torch-isa avx2         # torch and its peers limited to AVX2
    python bench/report.py --isa avx2               # kernelkit's AVX2 path (KERNELKIT_ISA)
    python bench/report.py --device cuda            # the GPU cases alone (bench/gpu.py)
    python bench/report.py --heap glibc             # glibc's dynamic malloc thresholds

The benchmarks run in a pytest subprocess (its progress goes to stderr). Every figure comes
from that one run: ratios are "other time / our time" (> 1: ours is faster), the memory floor is
the case's measured copy_ (in place) or clone (out of place), and the compute floor is the
case's arithmetic at the throughput of a torch.matmul measured in the same run (for popcount
cases: kernelkit's measured popcount peak on the row's ISA path). Nothing here reads a network;
it only needs the bench/bench_<family>.py files and their conftest.py.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ROLE_ORDER = {"ours": 0, "peer": 1, "floor": 2}
NOISY = 0.10  # other processes used more than this share of the machine: flag the figure


# ---------------------------------------------------------------------------------------------
# Formatting.


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.1f} µs"
    if s < 1.0:
        return f"{s * 1e3:.3g} ms"
    return f"{s:.3g} s"


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "-"
    return f"{r:.2f}x" if r < 100 else f"{r:.0f}x"


def fmt_count(v: float) -> str:
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g} {unit}"
    return f"{v:.3g}"


def fmt_load(rows: list[Row]) -> str:
    vals = [r.info.get("others_cpu") for r in rows]
    vals = [v for v in vals if v is not None]
    if not vals:
        return "-"
    worst = max(vals)
    return f"{100 * worst:.0f}%" + (" !" if worst > NOISY else "")


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


# ---------------------------------------------------------------------------------------------
# The run.


# What torch (ATen, oneDNN, MKL) may use with --torch-isa avx2: the CPU the issues and the
# README's figures describe when this machine offers AVX-512 or AMX to the peers.
TORCH_AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                   "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

# --heap stable (the default): fixed glibc malloc thresholds for the whole run, every impl
# alike. With glibc's dynamic thresholds a freed block at the heap's top is handed back to the
# kernel once it passes twice the largest block freed so far, so a torch op that allocates and
# frees a few MiB a call page-faults them in again on every call, or not, by the process's
# heap history: torch's 3x3 conv of the conv-loop case took 0.55 ms a call in one process and
# 1.75 ms (500 page faults a call) in another. PyTorch's CPU tuning guide gives the same advice
# (a caching allocator such as jemalloc or tcmalloc); these two tunables are glibc's own.
STABLE_HEAP = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=67108864:"
                                 "glibc.malloc.trim_threshold=268435456"}


def bench_env(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """The benchmark subprocess's environment: ``environ`` with the run's settings."""
    env = dict(environ, PYTHONDONTWRITEBYTECODE="1")
    if args.torch_isa == "avx2":
        env.update(TORCH_AVX2_ONLY)
    if args.heap == "stable":
        env.update(STABLE_HEAP)
    if args.isa is not None:
        env["KERNELKIT_ISA"] = args.isa
    return env


def run_benchmarks(json_path: Path, args: argparse.Namespace) -> int:
    case_time = args.case_time if args.case_time is not None else (0.2 if args.quick else 1.0)
    min_rounds = 3 if args.quick else 5
    cmd = [
        sys.executable, "-m", "pytest", str(BENCH), "-q",
        f"--benchmark-json={json_path}",
        "--benchmark-columns=median,iqr,rounds",
        f"--bench-threads={args.threads}",
        f"--bench-case-time={case_time}",
        f"--bench-min-rounds={min_rounds}",
        f"--bench-device={args.device}",
    ]
    if args.k:
        cmd += ["-k", args.k]
    cmd += args.pytest_args
    env = bench_env(args, os.environ)
    print("running:", " ".join(cmd), file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=sys.stderr, stderr=sys.stderr,
                          check=False)
    return proc.returncode


# ---------------------------------------------------------------------------------------------
# The report.


Result = tuple[dict[str, Any], float | None, str, str]  # target, value, verdict, others' CPU


class Row:
    """One benchmark (or the synthetic compute floor) of a case."""

    def __init__(self, info: dict[str, Any], stats: dict[str, Any] | None, t: float) -> None:
        self.info = info
        self.stats = stats or {}
        self.t = t  # seconds per call: the chosen statistic (median unless --stat min)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.info[key]
        except KeyError:
            raise AttributeError(key) from None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.info["family"], self.info["case"], self.info["impl"])

    def gbps(self) -> float:
        return self.info["bytes"] / self.t / 1e9

    def geps(self) -> float:
        return self.info["elements"] / self.t / 1e9


def peak_flops(kk: dict[str, Any], dtype: str) -> float | None:
    """Best (least disturbed) matmul FLOP/s of the run for dtype, start or end measurement."""
    roof = kk.get("roofline", {})
    vals = [m[dtype]["flops_per_s"] for m in roof.values() if dtype in m]
    return max(vals) if vals else None


def peak_popcount(kk: dict[str, Any], isa: str | None) -> float | None:
    """Best bit-pair MAC/s of kernelkit's popcount loop on isa, start or end measurement."""
    vals = [m["popcount"][isa]["macs_per_s"] for m in kk.get("roofline", {}).values()
            if isa in m.get("popcount", {})]
    return max(vals) if vals else None


def peak_half_gemm(kk: dict[str, Any], isa: str | None, dtype: str) -> float | None:
    """Best FLOP/s of kernelkit's half GEMM micro-kernel operation on isa for dtype operands."""
    vals = [m["half_gemm"][isa][dtype] for m in kk.get("roofline", {}).values()
            if dtype in m.get("half_gemm", {}).get(isa, {})]
    return max(vals) if vals else None


# compute_dtype values whose floor is a peak of the row's own ISA path.
PER_ISA_FLOORS = ("popcount", "half_gemm")


def compute_floor_s(row: Row, kk: dict[str, Any]) -> float | None:
    if not row.info.get("flops"):
        return None
    if row.info.get("compute_dtype") == "popcount":  # one bit-pair MAC per counted op
        peak = peak_popcount(kk, row.info.get("isa"))
        return row.info["flops"] / peak if peak else None
    if row.info.get("compute_dtype") == "half_gemm":  # FLOPs, an FMA counted as two
        peak = peak_half_gemm(kk, row.info.get("isa"), row.info.get("dtype", ""))
        return row.info["flops"] / peak if peak else None
    peak = peak_flops(kk, row.info.get("compute_dtype", "float32"))
    if peak is None:
        return None
    # A GEMM's FLOPs count an FMA as two; an add/sub is one op at the FMA's instruction rate.
    rate = peak if row.info.get("flop_kind") == "fma" else peak / 2
    return row.info["flops"] / rate


def group_cases(benchmarks: list[dict[str, Any]],
                stat: str) -> dict[tuple[str, str], list[Row]]:
    cases: dict[tuple[str, str], list[Row]] = {}
    for b in benchmarks:
        info = b.get("extra_info", {})
        if "case" not in info:
            continue
        cases.setdefault((info["family"], info["case"]), []).append(
            Row(info, b["stats"], b["stats"][stat]))
    for rows in cases.values():
        rows.sort(key=lambda r: (ROLE_ORDER.get(r.role, 9), r.impl))
    return cases


def header_lines(data: dict[str, Any], stat: str) -> list[str]:
    kk = data.get("kernelkit", {})
    bi = kk.get("build_info", {})
    cpu = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?")
    lines = ["# kernelkit benchmark report", ""]
    lines.append(f"- run: {data.get('datetime', '?')}; {cpu}; torch {kk.get('torch', '?')} "
                 f"(CPU capability {kk.get('torch_cpu_capability', '?')}); "
                 f"threads {kk.get('torch_threads', '?')}; "
                 f"{kk.get('case_time', '?')} s of rounds per benchmark, "
                 f"min {kk.get('min_rounds', '?')} rounds")
    lines.append(f"- kernelkit: {kk.get('kernelkit_file', '?')}; ISA in use "
                 f"{bi.get('isa_in_use', '?')} (KERNELKIT_ISA "
                 f"{kk.get('kernelkit_isa_setting', '?')}; compiled "
                 f"{bi.get('isa_compiled', '?')}); {bi.get('compiler', '?')}; "
                 f"OpenMP {bi.get('openmp', '?')}; torch ISA {kk.get('torch_isa', '?')} "
                 "(avx2: limited by --torch-isa avx2)")
    lines.append(f"- heap: {kk.get('heap', '?')} (bench/report.py --heap)")
    roof = kk.get("roofline", {})
    if kk.get("device") == "cuda":
        lines.append(f"- device: {kk.get('device_name') or '?'} (CUDA); ours run the Triton "
                     "kernels; each timed call ends with torch.cuda.synchronize(); float32 "
                     "rooflines with TF32 off")
    for dtype in ("bfloat16", "float16", "float32", "float64"):
        parts = [f"{when} {m[dtype]['flops_per_s'] / 1e9:.0f}"
                 for when, m in roof.items() if dtype in m]
        peak = peak_flops(kk, dtype)
        if peak is None:
            continue
        n = next(iter(roof.values())).get("n", "?")
        lines.append(f"- compute roofline, {dtype}: torch.matmul {n}^3 "
                     f"{' / '.join(parts)} GFLOP/s (start / end of run); best "
                     f"{peak / 1e9:.0f} GFLOP/s = {peak / 2e9:.0f} G add/s (an add and an FMA "
                     "have the same instruction throughput, so add/s = FLOP/s / 2)")
    isas = sorted({isa for m in roof.values() for isa in m.get("popcount", {})})
    for isa in isas:
        parts = [f"{when} {m['popcount'][isa]['macs_per_s'] / 1e9:.0f}"
                 for when, m in roof.items() if isa in m.get("popcount", {})]
        lines.append(f"- compute roofline, popcount {isa}: kernelkit._C.binary_popcount_peak "
                     f"{' / '.join(parts)} G bit-pair MAC/s (start / end of run)")
    gemm_isas = sorted({isa for m in roof.values() for isa in m.get("half_gemm", {})})
    for isa in gemm_isas:
        parts = [" / ".join(f"{m['half_gemm'][isa][dt] / 1e9:.0f}" for m in roof.values()
                            if isa in m.get("half_gemm", {})) + f" ({dt})"
                 for dt in ("float16", "bfloat16")]
        lines.append(f"- compute roofline, half GEMM {isa}: kernelkit._C.half_gemm_peak "
                     f"{'; '.join(parts)} GFLOP/s (start / end of run; bfloat16 by AMX "
                     "tdpbf16ps where usable, else vdpbf16ps where the AVX-512 path has "
                     "AVX512_BF16)")
    if roof and not isas:
        lines.append("- compute roofline, popcount: not measured (this kernelkit has no "
                     "_C.binary_popcount_peak): the popcount cases have no compute floor")
    lines.append(f"- times: the {stat} of the rounds; ratios: other time / our time from this "
                 "one run; > 1 means ours is faster; a floor ratio is the fraction of the floor's "
                 "speed we reach")
    lines.append(f"- others' CPU: share of the machine used by other processes while a "
                 f"benchmark ran (worst of the rows compared); ! marks > {100 * NOISY:.0f}%: "
                 "that figure is disturbed; load average at the end "
                 + " / ".join(f"{v:.2f}" for v in kk.get("loadavg_end", [])))
    return lines


def summary_lines(cases: dict[tuple[str, str], list[Row]], kk: dict[str, Any],
                  stat: str) -> list[str]:
    rows = []
    for (family, case), group in cases.items():
        for ours in (r for r in group if r.role == "ours"):
            same = [r for r in group if r.role != "ours" and r.variant == ours.variant]
            peers = [f"{p.impl} {fmt_ratio(p.t / ours.t)}"
                     for p in same if p.role == "peer"]
            floors = [f"{f.impl} {fmt_ratio(f.t / ours.t)}"
                      for f in same if f.role == "floor"]
            cf = compute_floor_s(ours, kk)
            rows.append([
                f"{family}: {case}", ours.impl, ours.info.get("isa") or "-", fmt_time(ours.t),
                f"{ours.gbps():.1f}",
                f"{ours.geps():.3f}", "; ".join(peers) or "-", "; ".join(floors) or "-",
                fmt_ratio(cf / ours.t if cf else None), fmt_load([ours, *same]),
            ])
    head = ["case", "ours", "ISA", stat, "GB/s", "Gelem/s", "vs peers, same variant",
            "vs memory floor", "vs compute floor", "others' CPU"]
    return ["## Summary", ""] + table(head, rows)


def compute_floor_rows(group: list[Row], kk: dict[str, Any]) -> list[Row]:
    """The case's compute floor: one row, or for popcount cases one per ISA our rows ran."""
    floors: dict[str | None, Row] = {}
    for r in [x for x in group if x.role == "ours"] or group[:1]:
        cf = compute_floor_s(r, kk)
        isa = r.info.get("isa") if r.info.get("compute_dtype") in PER_ISA_FLOORS else None
        if cf is None or isa in floors:
            continue
        floors[isa] = Row(dict(r.info, impl="compute floor" + (f" {isa}" if isa else ""),
                               role="floor", variant="any", isa=isa,
                               note=f"{r.info['flop_kind']} ops at the measured rate"), None, cf)
    return list(floors.values())


def case_lines(family: str, case: str, group: list[Row], kk: dict[str, Any],
               stat: str) -> list[str]:
    first = group[0].info
    ours = [r for r in group if r.role == "ours"]
    floors = compute_floor_rows(group, kk)
    lines = [f"### {family}: {case}", ""]
    lines.append(f"shape {tuple(first['shape'])} {first['dtype']}, "
                 f"{fmt_count(first['elements'])} elements, "
                 f"{fmt_count(first['bytes'])}B moved (read + write), "
                 f"{fmt_count(first['flops'])} {first['flop_kind']} ops "
                 f"in {first['compute_dtype']}"
                 + "".join(f"; {f.impl} {fmt_time(f.t)}" for f in floors)
                 + (f". {first['case_note']}" if first.get("case_note") else ""))
    lines.append("")
    head = ["impl", "role", "variant", "ISA", stat, "IQR/median", "rounds", "others' CPU",
            "GB/s", "Gelem/s"]
    head += [f"vs {o.impl}" for o in ours] + ["note"]
    out = []
    for r in list(group) + floors:
        cells = [r.impl, r.role, r.variant, r.info.get("isa") or "-", fmt_time(r.t)]
        if r.stats:
            cells += [f"{100 * r.stats['iqr'] / r.stats['median']:.0f}%", str(r.stats["rounds"]),
                      fmt_load([r])]
        else:
            cells += ["-", "-", "-"]
        cells += [f"{r.gbps():.1f}", f"{r.geps():.3f}"]
        for o in ours:
            ratio = fmt_ratio(r.t / o.t)
            same = r.variant in (o.variant, "any")
            cells.append(ratio if same else f"({ratio})")
        cells.append(r.info.get("note", ""))
        out.append(cells)
    return lines + table(head, out)


def skipped_lines(kk: dict[str, Any]) -> list[str]:
    skipped = kk.get("skipped", [])
    if not skipped:
        return []
    rows = []
    for s in skipped:
        info = s.get("extra_info", {})
        where = f"{info['family']}: {info['case']}" if info else s["nodeid"]
        rows.append([where, info.get("impl", "?"), s["reason"]])
    return ["## Skipped", ""] + table(["case", "impl", "reason"], rows)


def target_condition_unmet(t: dict[str, Any], ra: Row | None,
                           kk: dict[str, Any]) -> str | None:
    """Why target t does not apply to this run, or None when it does.

    A target may carry ``when``: ``torch_isa`` (``native`` or ``avx2``: the run's
    --torch-isa), ``isa`` (the ISA path row a ran, e.g. ``avx512``), and ``cpu_has`` /
    ``cpu_lacks`` (lists of ``build_info()['cpu_features']`` flags)."""
    when = t.get("when", {})
    features = kk.get("build_info", {}).get("cpu_features", {})
    missing = [f for f in when.get("cpu_has", []) if not features.get(f)]
    present = [f for f in when.get("cpu_lacks", []) if features.get(f)]
    if missing or present:
        why = ", ".join([f"lacks {f}" for f in missing] + [f"has {f}" for f in present])
        return f"this CPU {why}"
    if "torch_isa" in when and kk.get("torch_isa", "native") != when["torch_isa"]:
        return (f"applies to runs with --torch-isa {when['torch_isa']}; this run's torch: "
                f"{kk.get('torch_isa', 'native')}")
    if "isa" in when and ra is not None and ra.info.get("isa") != when["isa"]:
        return f"applies where {ra.impl} runs {when['isa']}; it ran {ra.info.get('isa')}"
    return None


def target_results(cases: dict[tuple[str, str], list[Row]],
                   kk: dict[str, Any]) -> list[Result]:
    by_key = {r.key: r for group in cases.values() for r in group}
    skipped = {(s["extra_info"]["family"], s["extra_info"]["case"], s["extra_info"]["impl"]):
               s["reason"] for s in kk.get("skipped", []) if s.get("extra_info")}
    results = []
    for module in kk.get("modules", {}).values():
        family = module["family"]
        for t in module.get("targets", []):
            ka, kb = (family, *t["a"]), (family, *t["b"])
            ra, rb = by_key.get(ka), by_key.get(kb)
            unmet = target_condition_unmet(t, ra, kk)
            if unmet:
                results.append((t, None, f"N/A ({unmet})", "-"))
                continue
            if ra is None or rb is None:
                missing = kb if ra is not None else ka
                why = skipped.get(missing, "not run")
                results.append((t, None, f"N/A ({missing[2]} @ {missing[1]}: {why})", "-"))
                continue
            value = (ra.elements / ra.t) / (rb.elements / rb.t)
            results.append((t, value, "PASS" if value >= t["min"] else "FAIL",
                            fmt_load([ra, rb])))
    return results


def target_lines(results: list[Result]) -> list[str]:
    if not results:
        return []
    rows = [[t["name"], fmt_ratio(v), f">= {t['min']}x", verdict, load]
            for t, v, verdict, load in results]
    head = ["target", "measured", "required", "result", "others' CPU"]
    return ["## Targets", "", "elements/s of a over elements/s of b (on one case: b's time "
            "over a's time)", ""] + table(head, rows)


def render(data: dict[str, Any], stat: str = "median") -> tuple[str, list[Result]]:
    kk = data.get("kernelkit", {})
    cases = group_cases(data.get("benchmarks", []), stat)
    lines = header_lines(data, stat) + [""] + summary_lines(cases, kk, stat) + ["", "## Cases", ""]
    for (family, case), group in cases.items():
        lines += case_lines(family, case, group, kk, stat) + [""]
    skipped = skipped_lines(kk)
    if skipped:
        lines += skipped + [""]
    results = target_results(cases, kk)
    lines += target_lines(results)
    return "\n".join(lines) + "\n", results


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer rounds (about 0.2 s per case)")
    p.add_argument("--json", type=Path, help="keep pytest-benchmark's JSON at this path")
    p.add_argument("--from-json", type=Path, help="render a kept JSON; run nothing")
    p.add_argument("-k", help="pytest -k expression (selects cases)")
    p.add_argument("--threads", type=int, default=2, help="threads for ours and peers (2)")
    p.add_argument("--torch-isa", choices=("native", "avx2"), default="native",
                   help="limit torch and the peers built on it to AVX2 (default: what the CPU "
                        "offers)")
    p.add_argument("--isa", choices=("auto", "portable", "avx2", "avx512"),
                   help="kernelkit's ISA path for the run (sets KERNELKIT_ISA; default: the "
                        "environment's, else auto)")
    p.add_argument("--heap", choices=("stable", "glibc"), default="stable",
                   help="stable: glibc malloc's mmap / trim thresholds fixed at 64 / 256 MiB "
                        "for every row (default); glibc: the environment's own settings")
    p.add_argument("--case-time", type=float, help="seconds of rounds per benchmark")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu: the CPU cases (default); cuda: the GPU cases alone")
    p.add_argument("--stat", choices=("median", "min"), default="median",
                   help="statistic of the rounds used for times and ratios (median)")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    p.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    status = 0
    if args.from_json:
        path = args.from_json
    else:
        if args.json:
            path = args.json
        else:
            fd, name = tempfile.mkstemp(prefix="kernelkit-bench-", suffix=".json")
            os.close(fd)
            path = Path(name)
        started = datetime.datetime.now()
        rc = run_benchmarks(path, args)
        print(f"benchmarks took {datetime.datetime.now() - started}", file=sys.stderr)
        if rc not in (0, 5):  # 5: nothing collected
            print(f"pytest exited with {rc}: a case failed (see above); the report covers "
                  "the cases that ran", file=sys.stderr)
            status = 1
    try:
        data = json.loads(path.read_text()) if path.stat().st_size else {}
    except (OSError, json.JSONDecodeError) as err:
        print(f"no benchmark results in {path}: {err}", file=sys.stderr)
        return 1
    finally:
        if not args.from_json and not args.json:
            path.unlink(missing_ok=True)
    text, results = render(data, args.stat)
    sys.stdout.write(text)
    if args.strict and any(verdict == "FAIL" for _, _, verdict, _ in results):
        status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
