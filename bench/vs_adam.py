#!/usr/bin/env python3
"""cvxnn against Adam / SGD (PyTorch) on the same training objective.

Protocol
========
Objective (docs/DESIGN.md section 0), identical on both sides:

    F(U, a) = (1/n) sum_j loss(f(x_j), y_j) + (lambda/2) (||U||_F^2 + ||a||^2),
    f(X)    = relu(X U) a            (no output bias, no separate hidden bias),

with ``loss(p, y) = (p - y)^2 / 2`` (regression) or ``log(1 + exp(-y p))`` (binary, softplus).
The design matrix ``X`` is built exactly as cvxnn builds it (``crates/cvxnn/src/data``):

* features z-scored with the population mean / std of the training rows; a constant column gets
  scale 1 and its value as mean, so it maps to 0;
* a column of ones appended (the hidden bias; it is regularized like every weight);
* regression targets divided by their population std (not centred; std 0 -> scale 1);
* binary targets (exactly two distinct values) mapped to -1 (smaller value) / +1 (larger);
* every other target is a regression target.  Multi-class labels (iris, digits) are therefore,
  until cvxnn has multi-class models, fitted as a regression on the class index: the table marks
  those data sets.

Both sides train on ALL rows (``--test-fraction 0`` for cvxnn).

For every (data set, lambda):

1. cvxnn: ``cvxnn train --data F --lambda L --test-fraction 0 --out TMP --force --json --quiet``
   plus ``--cvxnn-args`` (default ``--model relu --patterns adaptive --init sgd``).  From
   ``TMP/report.json``: ``objective`` (or the field ``--cvxnn-field`` names), ``seconds``,
   ``neurons``, ``certificate``, ``status``, ``column_generation``; the process is also timed
   wall-clock, with a timeout.  ``RAYON_NUM_THREADS`` is set to ``--cvxnn-threads`` (default 1,
   like the single PyTorch thread; 0 leaves the environment alone).  The report's ``n_train``,
   ``d``, ``task`` and ``target_scale`` are checked against this script's preprocessing.
2. Baselines: full-batch gradient training in float64 PyTorch (``--threads``, default 1) of the
   same network, widths ``m`` in {max(cvxnn neurons, 1), 2 max(cvxnn neurons, 1)} (or
   ``--widths``; ``--fallback-widths`` when cvxnn gave no network), Adam with lr in
   ``--adam-lrs`` and SGD (momentum ``--sgd-momentum``) with lr in ``--sgd-lrs``, ``--epochs``
   epochs, init like ``nn.Linear`` (uniform +-1/sqrt(fan_in) for weight and bias of layer 1,
   +-1/sqrt(m) for layer 2; seeded, the same initial network for every optimizer of a width).
   Each run records its final objective, its wall time, and the objective every
   ``--record-every`` epochs (its best value too).  A run whose objective becomes NaN/inf is
   recorded as diverged.  The best run of a case is the one with the lowest final objective; the
   grid's total time is the sum of its runs.
3. Cross-check (once per data set, first lambda, best PyTorch network): the network is exported
   on RAW features in cvxnn's PyTorch naming (``0.weight`` (m, p), ``0.bias`` (m), ``2.weight``
   (1, m), float64 safetensors; standardization and target scale folded in as in
   ``crates/cvxnn/src/network/export.rs``) and given to ``cvxnn certify --model FILE --data F
   --lambda L --test-fraction 0 --json`` (plus ``--certify-args``, default ``--patterns 20
   --max-iter 2000``: the network objective does not depend on the solve, which only tightens
   the lower bound).
   cvxnn's ``network_objective`` must equal the PyTorch objective to ``--crosscheck-rtol``
   (1e-8) relative: both sides then measure the same objective.  The certify lower bound is
   reported too (relative to the sampled patterns plus the network's own patterns).

Output: a markdown table on stdout (and in ``--markdown FILE``), a JSON dump of everything
(``--json FILE``), and the fraction of cases where cvxnn's objective is <= the best baseline's
(``<=`` with a relative slack of ``--tie-rtol``, default 1e-9).  The exit code is 0 when every
cvxnn run succeeded and every cross-check passed, 1 otherwise.

Usage (from the repository root)::

    python bench/vs_adam.py --quick \\
        --cvxnn-args "--model relu --patterns 100 --solver first-order --max-iter 20000"
    python bench/vs_adam.py --markdown bench/vs_adam.md --json bench/vs_adam.json
    python bench/vs_adam.py --data diabetes iris --lambdas 1e-3 --epochs 20000

Requires numpy and torch; writing safetensors needs no extra package (the format is written
directly).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ["diabetes", "breast_cancer", "iris", "digits"]
DEFAULT_CVXNN_ARGS = "--model relu --patterns adaptive --init sgd"
FALLBACK_CVXNN_ARGS = "--model relu --patterns 100 --solver first-order --max-iter 20000"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def float_list(s: str) -> list[float]:
    return [float(v) for v in s.replace(",", " ").split()]


def int_list(s: str) -> list[int]:
    return [int(v) for v in s.replace(",", " ").split()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="cvxnn vs Adam/SGD (PyTorch) on the same objective; see the module docstring.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--cvxnn", default=os.environ.get("CVXNN_BIN", str(REPO / "target/release/cvxnn")),
                   help="cvxnn binary (env CVXNN_BIN)")
    p.add_argument("--cvxnn-args", default=DEFAULT_CVXNN_ARGS,
                   help="extra arguments of `cvxnn train` (the script adds --data --lambda "
                        "--test-fraction 0 --out --force --json --quiet); until adaptive patterns "
                        f"land use e.g. \"{FALLBACK_CVXNN_ARGS}\"")
    p.add_argument("--cvxnn-field", default="objective", choices=["objective", "network_objective"],
                   help="report.json field compared with the baselines")
    p.add_argument("--cvxnn-timeout", type=float, default=3600.0, help="seconds per cvxnn process")
    p.add_argument("--cvxnn-threads", type=int, default=1,
                   help="RAYON_NUM_THREADS for cvxnn (0: leave the environment alone)")
    p.add_argument("--no-preflight", action="store_true",
                   help="do not check --cvxnn-args against `cvxnn train --help`")
    p.add_argument("--data", nargs="+", default=DEFAULT_DATA,
                   help="data set names (looked up in --data-dirs) or CSV paths")
    p.add_argument("--data-dirs", nargs="+",
                   default=[str(REPO / "examples/data"), str(REPO / "shared/data"),
                            str(REPO.parent / "shared/data")],
                   help="where data set names are looked up (NAME.csv)")
    p.add_argument("--target", default="y", help="target column")
    p.add_argument("--lambdas", type=float_list, default=[1e-2, 1e-3, 1e-4])
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--record-every", type=int, default=50)
    p.add_argument("--widths", type=int_list, default=None,
                   help="fixed baseline widths instead of {max(neurons,1), 2*that}")
    p.add_argument("--fallback-widths", type=int_list, default=[16, 64],
                   help="baseline widths when cvxnn gave no network")
    p.add_argument("--max-width", type=int, default=0, help="cap on baseline widths (0: none)")
    p.add_argument("--adam-lrs", type=float_list, default=[1e-1, 1e-2, 1e-3])
    p.add_argument("--sgd-lrs", type=float_list, default=[1e-1, 1e-2])
    p.add_argument("--sgd-momentum", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0, help="seed of the PyTorch initialization")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--no-crosscheck", action="store_true")
    p.add_argument("--certify-args", default="--patterns 20 --max-iter 2000",
                   help="extra arguments of the cross-check's `cvxnn certify`")
    p.add_argument("--crosscheck-rtol", type=float, default=1e-8)
    p.add_argument("--tie-rtol", type=float, default=1e-9,
                   help="cvxnn counts as <= best when cvxnn <= best * (1 + tie_rtol)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: --quick-epochs epochs and only the first lambda")
    p.add_argument("--quick-epochs", type=int, default=500)
    p.add_argument("--markdown", type=Path, help="write the markdown table here")
    p.add_argument("--json", type=Path, help="write everything as JSON here")
    p.add_argument("--workdir", type=Path,
                   help="keep cvxnn outputs here (default: a temporary folder, removed at the end)")
    args = p.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, args.quick_epochs)
        args.lambdas = args.lambdas[:1]
    if args.epochs < 1 or args.record_every < 1:
        p.error("--epochs and --record-every must be >= 1")
    if not args.lambdas or any(not (l > 0 and math.isfinite(l)) for l in args.lambdas):
        p.error("--lambdas must be finite numbers > 0")
    return args


def die(msg: str) -> None:
    print(f"vs_adam.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------------------------
# Data: cvxnn's preprocessing, reproduced
# --------------------------------------------------------------------------------------------


def resolve_data(name: str, dirs: list[str]) -> Path:
    p = Path(name)
    if p.suffix == ".csv" or p.exists():
        if not p.is_file():
            die(f"data file {p} not found")
        return p.resolve()
    for d in dirs:
        c = Path(d) / f"{name}.csv"
        if c.is_file():
            return c.resolve()
    die(f"data set `{name}` not found as {name}.csv in: {', '.join(dirs)}")
    raise AssertionError


def load_csv(path: Path, target: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Features (all columns but the target, in file order) and the target, as float64."""
    with open(path) as fh:
        header = [h.strip() for h in fh.readline().strip().split(",")]
    if target not in header:
        die(f"{path}: no target column `{target}` (columns: {', '.join(header)})")
    data = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    t = header.index(target)
    feats = [j for j in range(len(header)) if j != t]
    return [header[j] for j in feats], data[:, feats], data[:, t]


def preprocess(x_raw: np.ndarray, y_raw: np.ndarray) -> dict:
    """cvxnn's default preprocessing: standardize (population std), ones column, target encoding."""
    n, p = x_raw.shape
    mean = np.empty(p)
    scale = np.empty(p)
    for k in range(p):
        c = x_raw[:, k]
        if np.all(c == c[0]):  # constant column: maps to 0
            mean[k], scale[k] = c[0], 1.0
            continue
        m = c.sum() / n
        s = math.sqrt(((c - m) ** 2).sum() / n)
        mean[k], scale[k] = m, (s if s > 0 and math.isfinite(s) else 1.0)
    x = np.hstack([(x_raw - mean) / scale, np.ones((n, 1))])
    values = np.unique(y_raw)
    note = ""
    if len(values) == 2:
        task, target_scale = "binary", 1.0
        y = np.where(y_raw == values[0], -1.0, 1.0)
        note = f"binary: {values[0]:g} -> -1, {values[1]:g} -> +1"
    else:
        task = "regression"
        m = y_raw.sum() / n
        var = ((y_raw - m) ** 2).sum() / n
        target_scale = math.sqrt(var) if var > 0 else 1.0
        y = y_raw / target_scale
        if len(values) <= 50 and np.all(values == np.round(values)):
            note = (f"{len(values)} integer labels fitted as regression on the class index "
                    "(multi-class not in cvxnn yet)")
    return dict(x=x, y=y, mean=mean, scale=scale, target_scale=target_scale, task=task,
                note=note, n=n, p=p, d=p + 1, constant_columns=int(np.sum(np.all(x_raw == x_raw[0], 0))))


# --------------------------------------------------------------------------------------------
# cvxnn
# --------------------------------------------------------------------------------------------


def cvxnn_env(args) -> dict:
    env = dict(os.environ)
    if args.cvxnn_threads > 0:
        env["RAYON_NUM_THREADS"] = str(args.cvxnn_threads)
    return env


def preflight(args) -> str:
    """Checks the binary runs and knows the flags of --cvxnn-args; returns `cvxnn --version`."""
    exe = Path(args.cvxnn)
    if not exe.is_file() or not os.access(exe, os.X_OK):
        die(f"cvxnn binary not found or not executable: {exe}\n"
            "  build it with `cargo build --release -p cvxnn-cli`, or pass --cvxnn PATH / CVXNN_BIN")
    try:
        version = subprocess.run([str(exe), "--version"], capture_output=True, text=True,
                                 timeout=60).stdout.strip()
        helps = {sub: subprocess.run([str(exe), sub, "--help"], capture_output=True, text=True,
                                     timeout=60).stdout for sub in ("train", "certify")}
    except (OSError, subprocess.SubprocessError) as e:
        die(f"cannot run {exe}: {e}")
    if args.no_preflight:
        return version
    for sub, extra in (("train", args.cvxnn_args), ("certify", args.certify_args)):
        if sub == "certify" and args.no_crosscheck:
            continue
        text = helps[sub]
        for tok in shlex.split(extra):
            if tok.startswith("--"):
                flag = tok.split("=")[0]
                if not re.search(re.escape(flag) + r"\b", text):
                    die(f"this cvxnn ({version}) has no `{flag}` in `cvxnn {sub}`; "
                        f"pass other --{sub if sub == 'certify' else 'cvxnn'}-args, e.g. "
                        f"--cvxnn-args \"{FALLBACK_CVXNN_ARGS}\" (or --no-preflight)")
            elif re.fullmatch(r"[A-Za-z][\w-]*", tok) and tok not in text:
                print(f"vs_adam.py: warning: `{tok}` does not appear in `cvxnn {sub} --help`",
                      file=sys.stderr)
    return version


def run_cvxnn(args, data: Path, lam: float, out: Path) -> dict:
    cmd = [args.cvxnn, "train", "--data", str(data), "--lambda", repr(lam), "--test-fraction", "0",
           *shlex.split(args.cvxnn_args), "--out", str(out), "--force", "--json", "--quiet"]
    rec = {"command": shlex.join(cmd), "ok": False}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.cvxnn_timeout,
                              env=cvxnn_env(args))
    except subprocess.TimeoutExpired:
        rec.update(error=f"timeout after {args.cvxnn_timeout:g} s", wall_seconds=time.perf_counter() - t0)
        return rec
    rec["wall_seconds"] = time.perf_counter() - t0
    rec["returncode"] = proc.returncode
    if proc.returncode != 0:
        rec["error"] = f"exit {proc.returncode}: " + proc.stderr.strip()[-2000:]
        return rec
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError) as e:
        rec["error"] = f"cannot read {out / 'report.json'}: {e}"
        return rec
    report.pop("trace", None)  # the solver trajectory: large, not needed here
    rec["report"] = report
    value = report.get(args.cvxnn_field)
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        rec["error"] = f"report.json has no finite `{args.cvxnn_field}` ({value!r})"
        return rec
    rec.update(ok=True, objective=float(value), seconds=report.get("seconds"),
               neurons=report.get("neurons"), certificate=report.get("certificate"),
               status=report.get("status"), column_generation=report.get("column_generation"))
    return rec


def check_cvxnn_preprocessing(report: dict, prep: dict) -> list[str]:
    """Differences between cvxnn's report and this script's preprocessing (empty when none)."""
    issues = []
    if report.get("n_train") not in (None, prep["n"]):
        issues.append(f"n_train {report['n_train']} != {prep['n']}")
    if report.get("d") not in (None, prep["d"]):
        issues.append(f"d {report['d']} != {prep['d']}")
    if report.get("task") not in (None, prep["task"]):
        issues.append(f"task {report['task']} != {prep['task']}")
    ts = report.get("target_scale")
    if ts is not None and abs(ts - prep["target_scale"]) > 1e-12 * prep["target_scale"]:
        issues.append(f"target_scale {ts!r} != {prep['target_scale']!r}")
    return issues


# --------------------------------------------------------------------------------------------
# PyTorch baselines
# --------------------------------------------------------------------------------------------


def objective(x, y, task, lam, u, a):
    z = torch.relu(x @ u) @ a
    if task == "binary":
        loss = torch.nn.functional.softplus(-y * z).mean()
    else:
        loss = 0.5 * ((z - y) ** 2).mean()
    return loss + 0.5 * lam * (u.square().sum() + a.square().sum())


def init_network(p: int, m: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """nn.Linear(p, m) then nn.Linear(m, 1, bias=False) default init, as (U (p+1, m), a (m))."""
    g = torch.Generator().manual_seed(seed)

    def unif(shape, bound):
        return (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound

    w1 = unif((m, p), 1 / math.sqrt(p))
    b1 = unif((m,), 1 / math.sqrt(p))
    w2 = unif((1, m), 1 / math.sqrt(m))
    return torch.cat([w1.T, b1[None, :]], 0).contiguous(), w2[0].clone()


def train_torch(x, y, task, lam, m, opt_name, lr, args) -> dict:
    u0, a0 = init_network(x.shape[1] - 1, m, args.seed)
    u, a = u0.requires_grad_(), a0.requires_grad_()
    if opt_name == "adam":
        opt = torch.optim.Adam([u, a], lr=lr)
    else:
        opt = torch.optim.SGD([u, a], lr=lr, momentum=args.sgd_momentum)
    trace = []  # (epoch, seconds, objective) at the record points, objective before that step
    diverged = False
    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        opt.zero_grad(set_to_none=True)
        f = objective(x, y, task, lam, u, a)
        f.backward()
        if epoch % args.record_every == 0:
            v = f.item()
            trace.append((epoch, time.perf_counter() - t0, v))
            if not math.isfinite(v):
                diverged = True
                break
        opt.step()
    with torch.no_grad():
        final = objective(x, y, task, lam, u, a).item()
    seconds = time.perf_counter() - t0
    if not diverged:
        trace.append((args.epochs, seconds, final))
    diverged = diverged or not math.isfinite(final)
    finite = [v for _, _, v in trace if math.isfinite(v)]
    return dict(optimizer=opt_name, lr=lr, width=m, epochs=args.epochs, seconds=seconds,
                final=None if diverged else final, diverged=diverged,
                best_seen=min(finite) if finite else None, trace=trace,
                params=None if diverged else (u.detach().clone(), a.detach().clone()))


def baseline_widths(args, cvx: dict) -> list[int]:
    if args.widths:
        widths = list(args.widths)
    elif cvx.get("ok") and isinstance(cvx.get("neurons"), int):
        m = max(cvx["neurons"], 1)
        widths = [m, 2 * m]
    else:
        widths = list(args.fallback_widths)
    if args.max_width > 0:
        widths = [min(w, args.max_width) for w in widths]
    return sorted(set(widths), key=widths.index)


def run_grid(prep: dict, lam: float, widths: list[int], args) -> list[dict]:
    x = torch.from_numpy(prep["x"])
    y = torch.from_numpy(prep["y"])
    grid = [("adam", lr) for lr in args.adam_lrs] + [("sgd", lr) for lr in args.sgd_lrs]
    runs = []
    for m in widths:
        for opt_name, lr in grid:
            r = train_torch(x, y, prep["task"], lam, m, opt_name, lr, args)
            runs.append(r)
            shown = "diverged" if r["diverged"] else f"{r['final']:.8e}"
            print(f"    {opt_name:4s} lr {lr:<6g} m {m:<5d} {shown:>15s}  {r['seconds']:7.2f} s",
                  file=sys.stderr)
    return runs


# --------------------------------------------------------------------------------------------
# Cross-check: the PyTorch network on raw features, evaluated by `cvxnn certify`
# --------------------------------------------------------------------------------------------


def write_safetensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Minimal safetensors writer (float64, little-endian, C order)."""
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"format": "pt", "producer": "cvxnn bench/vs_adam.py"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def export_raw(u: np.ndarray, a: np.ndarray, prep: dict) -> dict[str, np.ndarray]:
    """Folds standardization, bias column and target scale into raw-feature PyTorch weights:
    w . x_raw + b = u . design(x_raw), and 2.weight predicts in target units."""
    p = prep["p"]
    w1 = (u[:p, :] / prep["scale"][:, None]).T  # (m, p)
    b1 = u[p, :] - w1 @ prep["mean"]
    w2 = (a * prep["target_scale"])[None, :]
    return {"0.weight": w1, "0.bias": b1, "2.weight": w2}


def crosscheck(args, data: Path, prep: dict, lam: float, best: dict, workdir: Path) -> dict:
    u, a = (t.numpy() for t in best["params"])
    torch_obj = best["final"]
    path = workdir / f"{data.stem}_torch_best.safetensors"
    write_safetensors(path, export_raw(u, a, prep))
    cmd = [args.cvxnn, "certify", "--model", str(path), "--data", str(data), "--lambda", repr(lam),
           "--test-fraction", "0", *shlex.split(args.certify_args), "--json", "--quiet"]
    rec = {"command": shlex.join(cmd), "torch_objective": torch_obj, "lambda": lam,
           "run": f"{best['optimizer']} lr {best['lr']:g} m {best['width']}", "passed": False}
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.cvxnn_timeout,
                              env=cvxnn_env(args))
    except subprocess.TimeoutExpired:
        rec["error"] = f"timeout after {args.cvxnn_timeout:g} s"
        return rec
    rec["wall_seconds"] = time.perf_counter() - t0
    if proc.returncode != 0:
        rec["error"] = f"exit {proc.returncode}: " + proc.stderr.strip()[-2000:]
        return rec
    try:
        rep = json.loads(proc.stdout[proc.stdout.index("{"):])
    except ValueError as e:
        rec["error"] = f"cannot parse certify's JSON: {e}"
        return rec
    cvx_obj = rep.get("network_objective")
    rec["certify"] = rep
    rec["cvxnn_network_objective"] = cvx_obj
    if not isinstance(cvx_obj, (int, float)):
        rec["error"] = "certify printed no network_objective"
        return rec
    rel = abs(cvx_obj - torch_obj) / max(abs(torch_obj), 1e-300)
    rec["relative_difference"] = rel
    issues = [] if rel <= args.crosscheck_rtol else [f"objective differs by {rel:.2e} relative"]
    issues += check_cvxnn_preprocessing({"n_train": rep.get("n"), "d": rep.get("d"),
                                         "task": rep.get("task"),
                                         "target_scale": rep.get("target_scale")}, prep)
    rec["issues"] = issues
    rec["passed"] = not issues
    return rec


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def fmt(v, spec=".6e", none="—"):
    return none if v is None else format(v, spec)


def markdown(cases: list[dict], args, env: dict) -> str:
    cols = ["data", "n", "d", "lambda", "cvxnn objective", "cvxnn s (solve / wall)", "cvxnn neurons",
            "certificate (status)", "best Adam/SGD objective (optimizer, lr, width)", "its s",
            "grid total s", "ratio cvxnn/best", "cvxnn <= best?"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    notes = {}
    for c in cases:
        cv, best = c["cvxnn"], c["best"]
        name = c["data"]
        if c["note"] and "regression on the class index" in c["note"]:
            name += " †"
            notes["†"] = ("† multi-class labels fitted as a regression on the class index "
                          "(cvxnn infers regression for more than 2 distinct values; no multi-class "
                          "model yet).")
        if cv.get("ok"):
            cobj = fmt(cv["objective"])
            csec = f"{fmt(cv['seconds'], '.2f')} / {cv['wall_seconds']:.2f}"
            cneu = str(cv["neurons"])
            cert = f"{cv['certificate']} ({cv['status']})"
        else:
            cobj, csec, cneu = "error", fmt(cv.get("wall_seconds"), ".2f"), "—"
            cert = (cv.get("error") or "error").splitlines()[0][:60]
        if best:
            bobj = f"{best['final']:.6e} ({best['optimizer']}, {best['lr']:g}, {best['width']})"
            bsec = f"{best['seconds']:.2f}"
        else:
            bobj, bsec = "all diverged", "—"
        row = [name, str(c["n"]), str(c["d"]), f"{c['lambda']:g}", cobj, csec, cneu, cert, bobj,
               bsec, f"{c['grid_seconds']:.2f}", fmt(c["ratio"], ".6f"),
               {True: "yes", False: "no", None: "—"}[c["cvxnn_le_best"]]]
        lines.append("| " + " | ".join(row) + " |")
    compared = [c for c in cases if c["cvxnn_le_best"] is not None]
    wins = sum(c["cvxnn_le_best"] for c in compared)
    out = ["\n".join(lines), ""]
    out.append(f"cvxnn <= best baseline in {wins}/{len(compared)} cases"
               + (f" ({100 * wins / len(compared):.0f}%)" if compared else "")
               + f" (slack {args.tie_rtol:g} relative).")
    out.append("")
    out.append(f"n rows, all used for training; d = features + bias column. cvxnn objective: "
               f"report.json `{args.cvxnn_field}`; cvxnn args `{args.cvxnn_args}`, "
               f"RAYON_NUM_THREADS={args.cvxnn_threads or 'unset'}. Baselines: float64 PyTorch "
               f"{env['torch']}, {env['torch_threads']} thread(s), full batch, {args.epochs} epochs, "
               f"Adam lr {{{', '.join(f'{v:g}' for v in args.adam_lrs)}}}, SGD momentum "
               f"{args.sgd_momentum:g} lr {{{', '.join(f'{v:g}' for v in args.sgd_lrs)}}}, widths "
               f"{{max(cvxnn neurons,1), 2x}} unless fixed, seed {args.seed}; best = lowest final "
               f"objective; its s = that run's time; grid total = sum over the grid.")
    out.extend(notes.values())
    return "\n".join(out) + "\n"


def crosscheck_lines(checks: list[dict]) -> str:
    lines = []
    for ck in checks:
        head = f"cross-check {ck['data']} (lambda {ck['lambda']:g}, {ck['run']}): "
        if "relative_difference" in ck:
            cert = ck.get("certify", {})
            lines.append(head + f"torch {ck['torch_objective']:.15e}, cvxnn certify "
                         f"{ck['cvxnn_network_objective']:.15e}, rel. diff "
                         f"{ck['relative_difference']:.2e} -> "
                         + ("PASS" if ck["passed"] else "FAIL: " + "; ".join(ck["issues"]))
                         + f"; lower bound {fmt(cert.get('lower_bound'))} "
                         f"({cert.get('certificate')}), relative gap {fmt(cert.get('relative_gap'), '.2e')}")
        else:
            lines.append(head + "FAIL: " + ck.get("error", "no result").splitlines()[0])
    return "\n".join(lines) + ("\n" if lines else "")


def strip_params(obj):
    if isinstance(obj, dict):
        return {k: strip_params(v) for k, v in obj.items() if k != "params"}
    if isinstance(obj, list):
        return [strip_params(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    version = preflight(args)
    datasets = [resolve_data(d, args.data_dirs) for d in args.data]
    env = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), cvxnn=version,
               cvxnn_binary=str(Path(args.cvxnn).resolve()), torch=torch.__version__,
               torch_threads=torch.get_num_threads(), numpy=np.__version__,
               python=platform.python_version(), machine=platform.machine(),
               cpu_count=os.cpu_count(), platform=platform.platform())
    try:
        env["git_commit"] = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                           capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    own_tmp = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="cvxnn-vs-adam-")) if own_tmp else args.workdir
    workdir.mkdir(parents=True, exist_ok=True)

    cases, checks, problems = [], [], []
    try:
        for data in datasets:
            _, x_raw, y_raw = load_csv(data, args.target)
            prep = preprocess(x_raw, y_raw)
            print(f"{data.stem}: n {prep['n']}, d {prep['d']} ({prep['p']} features + bias, "
                  f"{prep['constant_columns']} constant), {prep['task']}"
                  + (f"; {prep['note']}" if prep["note"] else ""), file=sys.stderr)
            for li, lam in enumerate(args.lambdas):
                print(f"  lambda {lam:g}: cvxnn ...", file=sys.stderr)
                cvx = run_cvxnn(args, data, lam, workdir / f"{data.stem}_lambda{lam:g}")
                if cvx["ok"]:
                    cvx["preprocessing_issues"] = check_cvxnn_preprocessing(cvx["report"], prep)
                    problems += [f"{data.stem} lambda {lam:g}: {s}" for s in cvx["preprocessing_issues"]]
                    print(f"    cvxnn {cvx['objective']:.8e}  {cvx['seconds']:.2f} s "
                          f"(wall {cvx['wall_seconds']:.2f} s), {cvx['neurons']} neurons, "
                          f"{cvx['certificate']}, {cvx['status']}", file=sys.stderr)
                else:
                    problems.append(f"{data.stem} lambda {lam:g}: cvxnn: {cvx['error'].splitlines()[0]}")
                    print(f"    cvxnn FAILED: {cvx['error']}", file=sys.stderr)
                widths = baseline_widths(args, cvx)
                runs = run_grid(prep, lam, widths, args)
                ok_runs = [r for r in runs if not r["diverged"]]
                best = min(ok_runs, key=lambda r: r["final"]) if ok_runs else None
                ratio = le = None
                if best and cvx["ok"]:
                    ratio = cvx["objective"] / best["final"]
                    le = cvx["objective"] <= best["final"] * (1 + args.tie_rtol)
                    reach = next(((e, s) for e, s, v in best["trace"] if v <= cvx["objective"]), None)
                    best["reached_cvxnn"] = None if reach is None else {"epoch": reach[0], "seconds": reach[1]}
                cases.append(dict(data=data.stem, path=str(data), n=prep["n"], d=prep["d"],
                                  task=prep["task"], note=prep["note"], **{"lambda": lam},
                                  target_scale=prep["target_scale"], cvxnn=cvx, widths=widths,
                                  runs=runs, best=best, grid_seconds=sum(r["seconds"] for r in runs),
                                  ratio=ratio, cvxnn_le_best=le))
                if li == 0 and best and not args.no_crosscheck:
                    ck = crosscheck(args, data, prep, lam, best, workdir)
                    ck["data"] = data.stem
                    checks.append(ck)
                    print("    " + crosscheck_lines([ck]).strip(), file=sys.stderr)
                    if not ck["passed"]:
                        problems.append(f"{data.stem}: cross-check failed")
                for r in runs:
                    r["params"] = None  # free memory; only the first lambda's best is exported
    finally:
        if own_tmp:
            shutil.rmtree(workdir, ignore_errors=True)

    md = markdown(cases, args, env)
    xc = crosscheck_lines(checks)
    text = md + ("\n" + xc if xc else "")
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    if args.json:
        dump = dict(protocol=__doc__, environment=env,
                    options={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                    cases=cases, crosschecks=checks, problems=problems)
        args.json.write_text(json.dumps(strip_params(dump), indent=1, default=str))
    if problems:
        print("problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
