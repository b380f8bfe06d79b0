#!/usr/bin/env python3
"""Kernel microbenchmarks (issue 5) as multiples of the plain GEMMs measured in the same run.

Runs `cargo bench -p cvxnn --bench kernels` (criterion; see the doc comment of
crates/cvxnn/benches/kernels.rs for what each benchmark measures), then reads criterion's
`<target>/criterion/<group>/<bench>/new/{benchmark,estimates}.json` and prints a markdown table:
kernel, shape, median time, flop count (a GEMM of m x k by k x n counts 2mkn), GFLOP/s, and the
time as a multiple of the plain GEMM(s) of the same shape that the kernel contains (or, for
kernels without a GEMM, of the GEMM it sits next to in an iteration, marked "vs").

    python3 bench/kernels.py                      # build + run the benchmarks, print the table
    python3 bench/kernels.py --no-run             # only read the last run's results
    python3 bench/kernels.py --markdown FILE      # also write the table (and machine line) to FILE
    python3 bench/kernels.py --filter gemm        # pass a criterion filter (subset of benchmarks)
    python3 bench/kernels.py --clock cpu          # 1-thread benchmarks in on-CPU time (busy machine)

With --no-run or --filter the table shows whatever results criterion holds for each benchmark,
possibly from earlier runs. `--clock cpu` (KERNELS_CLOCK=cpu for the bench) times single-threaded
benchmarks by the thread's CPU time from /proc/thread-self/schedstat, which on a shared machine
leaves out the time other processes hold the core; the 2-thread ones stay in wall time.

The target directory is $CARGO_TARGET_DIR or <repo>/target (override: --criterion-dir).
Benchmarks run single-threaded (1-thread rayon pools inside the bench) except the `_2t` ones.
Python 3 standard library only.
"""

import argparse
import datetime
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHAPE = re.compile(r"^n(\d+)_d(\d+)_p(\d+)$")


def machine_line():
    model, cpus = "unknown CPU", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "Model name":
                model = val.strip()
            elif key.strip() == "CPU(s)":
                cpus = val.strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    load = ""
    try:
        load = " load average " + " ".join(Path("/proc/loadavg").read_text().split()[:3]) + ";"
    except OSError:
        pass
    return f"{model}, {cpus} CPU(s);{load} {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}"


def criterion_dir(args):
    if args.criterion_dir:
        return Path(args.criterion_dir)
    target = os.environ.get("CARGO_TARGET_DIR")
    return (Path(target) if target else REPO / "target") / "criterion"


def run_benches(args):
    cmd = ["cargo", "bench", "-p", "cvxnn", "--bench", "kernels"]
    if args.locked:
        cmd.append("--locked")
    if args.filter:
        cmd += ["--", args.filter]
    print("+ " + " ".join(cmd), file=sys.stderr)
    env = dict(os.environ, KERNELS_CLOCK=args.clock)
    print(f"+ KERNELS_CLOCK={args.clock}", file=sys.stderr)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
    notes = []
    for line in proc.stdout:
        sys.stderr.write(line)
        if line.startswith(("kernels_clock", "fista_counts", "exact_enumerate")):
            notes.append(line.strip())
    if proc.wait() != 0:
        sys.exit(f"cargo bench failed (exit {proc.returncode})")
    return notes


def load(cdir):
    """{(group, bench): median seconds} from every benchmark criterion has results for."""
    res = {}
    for est in cdir.glob("*/*/new/estimates.json"):
        meta = json.loads((est.parent / "benchmark.json").read_text())
        median_ns = json.loads(est.read_text())["median"]["point_estimate"]
        res[(meta["group_id"], meta["function_id"])] = median_ns * 1e-9
    return res


def describe(group, name, n, d, p):
    """(shape, flops or None, [reference gemm names], note) for one benchmark of a shape group."""
    m = re.match(r"^gemm_(xv|xtr)_k(\d+)$", name)
    if m:
        k = int(m.group(2))
        shape = f"{n}x{d} * {d}x{k}" if m.group(1) == "xv" else f"{d}x{n} * {n}x{k}"
        return shape, 2 * n * d * k, [name], ""
    m = re.match(r"^gemm_(xv|xtr)_panels_k(\d+)$", name)
    if m:
        k = int(m.group(2))
        return f"n={n} d={d} k={k}", 2 * n * d * k, [f"gemm_{m.group(1)}_k{k}"], "256-row panels"
    m = re.match(r"^(apply|adjoint)_(gated|relu|relu_constrained)(_2t|_f32)?$", name)
    if m:
        k = p if m.group(2) == "gated" else 2 * p
        ref = f"gemm_xv_k{k}" if m.group(1) == "apply" else f"gemm_xtr_k{k}"
        note = {"_2t": "2 threads (vs 1-thread GEMM)", "_f32": "f32 products (vs f64 GEMM)"}
        return f"n={n} d={d} k={k}", 2 * n * d * k, [ref], note.get(m.group(3), "")
    m = re.match(r"^(prox|dual_norm)_k(\d+)$", name)
    if m:
        k = int(m.group(2))
        return f"{d}x{k}", None, [f"gemm_xv_k{k}"], "vs"
    if name == "violation_via_program":
        k = 2 * p
        return f"n={n} d={d} k={k}", 2 * n * d * k, [f"gemm_xv_k{k}"], "apply + 2 passes over n x 2P"
    if name == "al_penalty_grad_replica":
        k = 2 * p
        return f"{n}x{k} elementwise", None, [f"gemm_xv_k{k}"], "vs; copy of the private AL pass"
    if name == "al_relative_violation":
        k = 2 * p
        return f"{n}x{k} elementwise", None, [f"gemm_xv_k{k}"], "vs; the AL monitor's pass"
    if name == "fista_iter_gated":
        return f"n={n} d={d} k={p}", 4 * n * d * p, [f"gemm_xv_k{p}", f"gemm_xtr_k{p}"], "per iteration"
    return f"n={n} d={d} P={p}", None, [], ""


def table(res, notes):
    groups = {}
    for (g, b) in res:
        groups.setdefault(g, []).append(b)
    order = [
        "gemm_xv_k", "gemm_xtr_k", "gemm_xv_panels", "gemm_xtr_panels", "apply_gated",
        "apply_relu", "apply_relu_constrained", "adjoint_gated", "adjoint_relu",
        "adjoint_relu_constrained", "prox", "dual_norm", "violation", "al_penalty", "al_relative", "fista", "exact", "sample",
    ]

    def key(b):
        two = b.endswith("_2t")
        base = b[:-3] if two else b
        k = re.search(r"_k(\d+)$", base)
        k = int(k.group(1)) if k else 0
        if base in order:
            return (two, order.index(base), k, b)
        for i, o in enumerate(order):
            if base.startswith(o):
                return (two, i, k, b)
        return (two, len(order), 0, b)

    rows = [
        "| kernel | shape | median | GFLOP | GFLOP/s | x GEMM | GEMM reference | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for g in sorted(groups, key=lambda g: (SHAPE.match(g) is None, g)):
        sm = SHAPE.match(g)
        # Reference GEMMs for the pattern kernels: the n10000_d50_p200 group, if present.
        n, d, p = map(int, sm.groups()) if sm else (10000, 50, 200)
        ref_group = g if sm else "n10000_d50_p200"
        for b in sorted(groups[g], key=key):
            t = res[(g, b)]
            if sm:
                shape, flops, refs, note = describe(g, b, n, d, p)
            elif b.startswith("sample_patterns"):
                shape, flops, refs, note = "n=10000 d=50 P=200", None, ["gemm_xv_k200"], "vs"
            else:
                shape, flops, refs, note = "n=200 rank 3", None, [], ""
            ref_t = [res.get((ref_group, r)) for r in refs]
            mult = ""
            if refs and all(r is not None for r in ref_t):
                x = t / sum(ref_t)
                mult = f"{x:.2f}"
                ratios[(g, b)] = x
            gf = f"{flops / 1e9:.3f}" if flops else ""
            rate = f"{flops / t / 1e9:.1f}" if flops else ""
            ref_txt = " + ".join(refs)
            rows.append(
                f"| {b} | {shape} | {fmt_time(t)} | {gf} | {rate} | {mult} | {ref_txt} | {note} |"
            )
    lines = rows
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines), ratios


def fmt_time(s):
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} us"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="only read criterion's last results")
    ap.add_argument("--filter", help="criterion filter (regex on group/bench names)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: 1-thread benchmarks measure the bench thread's on-CPU time (shared machines)",
    )
    ap.add_argument("--locked", action="store_true", help="pass --locked to cargo")
    ap.add_argument("--markdown", metavar="FILE", help="also write the table to FILE")
    ap.add_argument("--criterion-dir", help="criterion output directory (default: <target>/criterion)")
    args = ap.parse_args()

    notes = [] if args.no_run else run_benches(args)
    cdir = criterion_dir(args)
    res = load(cdir)
    if not res:
        sys.exit(f"no criterion results under {cdir}")
    text, ratios = table(res, notes)
    fista = [(g, x) for (g, b), x in ratios.items() if b == "fista_iter_gated"]
    summary = [
        f"FISTA iteration / (gemm_xv + gemm_xtr) in {g}: {x:.2f} "
        f"({'within' if x <= 1.5 else 'above'} the 1.5x target of DESIGN section 9)"
        for g, x in sorted(fista)
    ]
    out = "\n".join(
        [f"Machine: {machine_line()}", "", text, ""]
        + [f"- {s}" for s in summary]
    ).rstrip() + "\n"
    print(out)
    if args.markdown:
        Path(args.markdown).write_text(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
