#!/usr/bin/env python3
"""cvxnn against its peers (scnn, CVXPY/Clarabel, Adam) on the same data, gates and objective.

Protocol
========
Objective (docs/DESIGN.md section 0), the one number every method is judged by, computed by
this script (``network_objective``) on the network each method returns:

    F = (1/n) sum_j (f(x_j) - y_j)^2 / 2 + lambda * sum_k ||u_k|| |a_k|,
    f(x) = sum_k act_k(x) (x . u_k) a_k,  act_k = 1[x . u_k >= 0] (ReLU) or 1[x . g_k >= 0] (gated)

(the weight-decay penalty (lambda/2)(||u_k||^2 + a_k^2) after the free per-neuron rescaling;
for convex solutions a_k = +-1 and ||u_k|| is the group norm).  Squared loss only: scnn has no
other loss, so a binary target (breast_cancer, 0/1) is fitted as a regression on its label
(``cvxnn train --task regression``) and scored by accuracy at the midpoint of the two labels.

Data.  ``--data`` names bundled sets (``examples/data``, ``../shared/data`` from the repository
root) or ``synth:n=N,d=D[,seed=S,noise=E,width=M]``: X ~ N(0, I_D), y from a planted two-layer
ReLU network of M neurons (default 10) plus Gaussian noise of E (default 0.1) times the signal's
std; N training rows plus test rows in proportion ``--test-fraction``.  Bundled sets are split
here (seeded permutation, ``--test-fraction``, default 0.2); train and test CSVs go to a work
folder (a temporary one unless ``--workdir``), never into the repository.

Preprocessing, as cvxnn's ``train`` does it (crates/cvxnn/src/estimator.rs, data/): z-score with
the training rows' mean and population std (a constant column maps to 0), a ones column appended
last (hidden bias, regularized), targets divided by their training std (not centred) unless
``--no-scale-target``.  cvxnn gets the train CSV with ``--test-fraction 0`` and does this itself;
the peers get this script's matrices.  Each cvxnn run is cross-checked: report ``n_train``,
``d``, ``target_scale``, ``patterns`` must match, and this script's objective of the saved
``model.safetensors`` (unfolded to the design space) must equal the report's
``network_objective`` to ``--check-rtol``.  Everyone is evaluated on the test CSV by this script.

Gates.  For each (data, P): Gaussian gates (seed ``--gate-seed``), d+1 values each, acting on
the preprocessed features; gates whose pattern 1[X g >= 0] on the training rows is empty or
repeats an earlier one are dropped (as cvxnn's sampler does) until P remain (or 20 P drawn).
Written to ``gates.csv`` and given to cvxnn (``--gates``), scnn (``G``) and CVXPY alike.  scnn
computes patterns as 1[X g > 0]; ties (X g == 0 exactly) are counted and reported.

Methods (``--methods``), run one at a time, each in its own process with ``--timeout``:
* ``cvxnn-gated``, ``cvxnn-relu``: ``cvxnn train --model gated-relu|relu --gates G --lambda L
  --tol T --max-iter M --task regression --loss squared --test-fraction 0 --json --quiet --out
  DIR`` (+ ``--cvxnn-args``); time = the whole process (wall), solver time = report ``seconds``.
  ``RAYON_NUM_THREADS = --threads``.  ``tol`` is a relative duality gap (and relative
  constraint violation).
* ``scnn-gated`` (ConvexGatedReLU(G) + RFISTA) and ``scnn-relu`` (ConvexReLU(G) + AL), pyscnn
  0.0.10, through ``scnn.optimize.optimize_model(..., regularizer=NeuronGL1(lambda),
  return_convex=True, unitize_data=False, dtype="float64", device="cpu")`` on this script's X
  (bias column included, so scnn's ``bias=False``).  scnn's objective
  ``(1/(2nc))||Y_hat - Y||_F^2 + lambda sum ||.||`` with c = 1 and no column normalization
  (``unitize_data=False``) is exactly F on the same X, y: no conversion of lambda is needed.  It
  is verified on every gated run (scnn's ``objective`` metric = loss + penalty must equal this
  script's value of its solution) and, with ``--scnn-verify``, on ReLU runs too (``model_loss``,
  which scnn would otherwise not compute: its metrics are recorded at every iteration, so extra
  ones slow it down; the AL's ``objective`` metric includes the penalty terms).  Iterations are
  the length of that per-iteration record.  ``tol`` (``--scnn-tol``, default ``--tol``) and ``max_iters``
  are passed to RFISTA / AL (``max_primal_iters = max_dual_iters = M``, ``constraint_tol =
  tol``); scnn's ``tol`` bounds the SQUARED norm of the minimum-norm subgradient, not a gap.
  Time = the ``optimize_model`` call (wall), solver time = scnn's own ``time`` metric.
* ``cvxpy-gated``, ``cvxpy-relu`` (or ``cvxpy`` for both): the same convex program in CVXPY
  (1.9), ``solver=cp.CLARABEL`` at its default tolerances; skipped when n P > ``--cvxpy-max-size``.
  Time = build + solve (wall), solver time = ``solver_stats.solve_time``.
* ``adam``: the non-convex network relu(X U) a, float64 PyTorch on CPU, full batch,
  ``--epochs`` epochs, width = cvxnn-relu's neurons (else cvxnn-gated's, else ``--adam-width``),
  nn.Linear-style seeded init, each lr of ``--adam-lrs``, loss + (lambda/2)(||U||^2 + ||a||^2);
  the best final F is reported, its time is that run's, the grid's total time is in the status.

Each ReLU solution (v_i, w_i) is scored as the ReLU network sum (X v_i)_+ - (X w_i)_+ (what one
gets from it); its convex objective and relative cone violation max(-c)_+ / max|c| (c = (2D_i -
I) X v_i, ...) are reported too.  Relative gap = (F - best F) / |best F| within a group: same data,
P, lambda and family (gated methods among themselves; ReLU programs and Adam together -- Adam is
not restricted to the P patterns, so it can be below the programs' optimum).  Speed-up columns
(cvxnn rows): peer time / cvxnn time, both wall, same model; ">" when the peer timed out.

Threads: ``--threads`` (default 2) is exported as OMP/MKL/OPENBLAS_NUM_THREADS before numpy is
imported, given to torch.set_num_threads and to cvxnn as RAYON_NUM_THREADS; Clarabel and CVXPY's
canonicalization are single-threaded.

Each method's row also records how many CPUs other processes kept busy meanwhile (/proc/stat;
flagged in the status above 0.3): on a shared 2-core machine the timings are then unreliable
(numpy/OpenBLAS, which scnn runs on, degraded up to 76x under such load).

Output: a markdown table on stdout (``--markdown FILE``), ``--json FILE`` with every number,
``--append-results`` appends a dated section (machine, load, command) to bench/RESULTS.md.
Exit code 1 when a method crashed (shown as "error" in the table) or a cross-check failed;
timeouts and skips are not errors.

Usage (from the repository root, after the install command of bench/README.md):

    .venv-peers/bin/python bench/peers/run.py --data diabetes synth:n=2000,d=10 \\
        --patterns 50 --lambdas 1e-3 --timeout 300
"""

from __future__ import annotations

import os
import sys

THREADS = os.environ.get("CVXNN_PEERS_THREADS")
if THREADS is None:  # before numpy loads its BLAS; spawned workers inherit the environment
    THREADS = "2"
    for i, a in enumerate(sys.argv):
        if a == "--threads" and i + 1 < len(sys.argv):
            THREADS = sys.argv[i + 1]
        elif a.startswith("--threads="):
            THREADS = a.split("=", 1)[1]
    os.environ["CVXNN_PEERS_THREADS"] = THREADS
    for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[_v] = THREADS

import argparse  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import struct  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

try:
    import numpy as np  # noqa: E402
except ImportError:
    sys.exit("run.py: numpy is missing: install the peers' environment (bench/README.md):\n"
             "  python3 -m venv .venv-peers && .venv-peers/bin/pip install -r bench/peers/requirements.txt\n"
             "and run this script with .venv-peers/bin/python")

REPO = Path(__file__).resolve().parents[2]
ALL_METHODS = ["cvxnn-gated", "scnn-gated", "cvxpy-gated", "cvxnn-relu", "scnn-relu", "cvxpy-relu", "adam"]
FAMILY = {m: ("gated" if m.endswith("gated") else "relu") for m in ALL_METHODS}

# ------------------------------------------------------------------------------------------
# Data, preprocessing, gates
# ------------------------------------------------------------------------------------------


def die(msg: str) -> None:
    print(f"run.py: error: {msg}", file=sys.stderr)
    sys.exit(2)


def load_dataset(spec: str, args) -> tuple[str, list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Returns (name, feature names, x_train, y_train, x_test, y_test) in raw units."""
    tf = args.test_fraction
    if spec.startswith("synth:"):
        kv = dict(item.split("=", 1) for item in spec[6:].split(",") if item)
        unknown = set(kv) - {"n", "d", "seed", "noise", "width"}
        if unknown or "n" not in kv or "d" not in kv:
            die(f"bad synthetic spec `{spec}` (synth:n=N,d=D[,seed=S,noise=E,width=M])")
        n, d = int(float(kv["n"])), int(kv["d"])
        seed, noise, width = int(kv.get("seed", 0)), float(kv.get("noise", 0.1)), int(kv.get("width", 10))
        n_test = int(round(n * tf / (1 - tf)))
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n + n_test, d))
        w = rng.standard_normal((d, width)) / math.sqrt(d)
        b = 0.5 * rng.standard_normal(width)
        a = rng.standard_normal(width)
        signal = np.maximum(x @ w + b, 0) @ a
        y = signal + noise * signal.std() * rng.standard_normal(n + n_test)
        names = [f"x{k + 1}" for k in range(d)]
        return spec.replace(":", "_").replace(",", "_").replace("=", ""), names, x[:n], y[:n], x[n:], y[n:]
    path = Path(spec)
    if not path.is_file():
        for folder in (REPO / "examples/data", REPO.parent / "shared/data", REPO / "shared/data"):
            if (folder / f"{spec}.csv").is_file():
                path = folder / f"{spec}.csv"
                break
        else:
            die(f"data set `{spec}` not found in examples/data or ../shared/data")
    with open(path) as fh:
        header = [h.strip() for h in fh.readline().strip().split(",")]
    if args.target not in header:
        die(f"{path}: no target column `{args.target}`")
    raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64, ndmin=2)
    t = header.index(args.target)
    feats = [j for j in range(len(header)) if j != t]
    perm = np.random.default_rng(args.split_seed).permutation(len(raw))
    n_test = int(round(tf * len(raw)))
    te, tr = perm[:n_test], perm[n_test:]
    x, y = raw[:, feats], raw[:, t]
    return path.stem, [header[j] for j in feats], x[tr], y[tr], x[te], y[te]


def write_csv(path: Path, names: list[str], x: np.ndarray, y: np.ndarray) -> None:
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.17g",
               header=",".join(names + ["y"]), comments="")


def preprocess(x_raw: np.ndarray, y_raw: np.ndarray, scale_target: bool) -> dict:
    n, p = x_raw.shape
    mean, scale = np.empty(p), np.empty(p)
    for k in range(p):
        c = x_raw[:, k]
        if np.all(c == c[0]):
            mean[k], scale[k] = c[0], 1.0
            continue
        m = c.sum() / n
        s = math.sqrt(((c - m) ** 2).sum() / n)
        mean[k], scale[k] = m, (s if s > 0 and math.isfinite(s) else 1.0)
    var = ((y_raw - y_raw.sum() / n) ** 2).sum() / n
    ts = math.sqrt(var) if scale_target and var > 0 else 1.0
    labels = np.unique(y_raw)
    return dict(mean=mean, scale=scale, target_scale=ts, n=n, p=p, d=p + 1,
                labels=labels if len(labels) == 2 else None)


def design(prep: dict, x_raw: np.ndarray) -> np.ndarray:
    return np.hstack([(x_raw - prep["mean"]) / prep["scale"], np.ones((len(x_raw), 1))])


def sample_gates(x: np.ndarray, count: int, seed: int) -> np.ndarray:
    """Gaussian gates (d x P) with distinct non-empty patterns 1[X g >= 0], as cvxnn samples."""
    rng = np.random.default_rng(seed)
    seen, kept, drawn, budget = set(), [], 0, max(20 * count, 1000)
    while len(kept) < count and drawn < budget:
        g = rng.standard_normal((x.shape[1], max(count - len(kept), 16)))
        drawn += g.shape[1]
        masks = x @ g >= 0
        for j in range(g.shape[1]):
            key = np.packbits(masks[:, j]).tobytes()
            if masks[:, j].any() and key not in seen and len(kept) < count:
                seen.add(key)
                kept.append(g[:, j])
    return np.array(kept).T


# ------------------------------------------------------------------------------------------
# The objective, metrics, networks
# ------------------------------------------------------------------------------------------


def predict(x: np.ndarray, net: dict) -> np.ndarray:
    z = x @ net["U"]
    on = (x @ net["gates"] >= 0) if net.get("gates") is not None else (z >= 0)
    return (z * on) @ net["a"]


def network_objective(x: np.ndarray, y: np.ndarray, lam: float, net: dict) -> float:
    r = predict(x, net) - y
    return 0.5 * float(r @ r) / len(y) + lam * float(np.linalg.norm(net["U"], axis=0) @ np.abs(net["a"]))


def convex_relu(x, y, lam, gates, v, w) -> tuple[float, float]:
    """Convex objective of (v_i, w_i) on patterns D_i = 1[X g_i >= 0], and relative violation."""
    s = np.where(x @ gates >= 0, 1.0, -1.0)
    xv, xw = x @ v, x @ w
    r = ((xv - xw) * (s > 0)).sum(1) - y
    obj = 0.5 * float(r @ r) / len(y) + lam * float(np.linalg.norm(v, axis=0).sum() + np.linalg.norm(w, axis=0).sum())
    c = np.concatenate([(s * xv).ravel(), (s * xw).ravel()])
    top = np.abs(c).max() if c.size else 0.0
    return obj, (max(float(-c.min()), 0.0) / top if top > 0 else 0.0)


def metric(x: np.ndarray, y_raw: np.ndarray, prep: dict, net: dict) -> str | None:
    if net is None or len(y_raw) == 0:
        return None
    pred = predict(x, net) * prep["target_scale"]
    if prep["labels"] is not None:
        lo, hi = prep["labels"]
        return f"acc {np.mean(np.where(pred >= (lo + hi) / 2, hi, lo) == y_raw):.4f}"
    ss = float(((y_raw - y_raw.mean()) ** 2).sum())
    return f"R² {1 - float(((pred - y_raw) ** 2).sum()) / ss:.4f}" if ss > 0 else None


def neurons(net: dict) -> int:
    c = np.linalg.norm(net["U"], axis=0) * np.abs(net["a"])
    return int((c > 1e-9 * c.max()).sum()) if c.size and c.max() > 0 else 0


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    buf = path.read_bytes()
    (h,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + h])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F64": "<f8", "F32": "<f4"}[info["dtype"]]
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(buf[8 + h + s:8 + h + e], dtype=dt).astype(np.float64).reshape(info["shape"])
    return out


def unfold(w: np.ndarray, b: np.ndarray, prep: dict) -> np.ndarray:
    """Raw-feature (m, p) weights and (m,) biases -> design-space (d, m), inverse of export."""
    return np.vstack([(w * prep["scale"]).T, (b + w @ prep["mean"])[None, :]])


# ------------------------------------------------------------------------------------------
# Methods (peers run in spawned worker processes)
# ------------------------------------------------------------------------------------------


def cvxnn_run(args, model: str, train_csv: Path, gates_csv: Path, lam: float, out: Path, prep: dict) -> dict:
    cmd = [args.cvxnn, "train", "--data", str(train_csv), "--task", "regression", "--loss", "squared",
           "--model", "gated-relu" if model == "gated" else "relu", "--gates", str(gates_csv),
           "--lambda", repr(lam), "--tol", repr(args.tol), "--max-iter", str(args.max_iter),
           "--test-fraction", "0", "--out", str(out), "--force", "--json", "--quiet",
           *(["--no-scale-target"] if args.no_scale_target else []), *shlex.split(args.cvxnn_args)]
    rec = {"command": shlex.join(cmd)}
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads))
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return dict(rec, timeout=True, error=f"timeout after {args.timeout:g} s", seconds=args.timeout)
    rec["seconds"] = time.perf_counter() - t0
    if proc.returncode != 0:
        return dict(rec, error=f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}")
    rep = json.loads((out / "report.json").read_text())
    rep.pop("trace", None)
    st = read_safetensors(out / "model.safetensors")
    ts = prep["target_scale"]
    net = {"U": unfold(st["0.weight"], st["0.bias"], prep), "a": st["2.weight"][0] / ts,
           "gates": unfold(st["gate.weight"], st["gate.bias"], prep) if "gate.weight" in st else None}
    return dict(rec, report=rep, net=net, solver_seconds=rep["seconds"], iterations=rep["iterations"],
                status=f"{rep['status']} ({rep['solver']}), gap {rep['relative_gap']:.1e}",
                violation=rep["violation"] if model == "relu" else None)


def scnn_solve(model: str, x, y, gates, lam, tol, max_iter, verify) -> dict:
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU, ConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL, RFISTA

    if model == "gated":
        m = ConvexGatedReLU(gates.copy())
        solver = RFISTA(m, max_iters=max_iter, tol=tol)
    else:
        m = ConvexReLU(gates.copy())
        solver = AL(m, max_primal_iters=max_iter, max_dual_iters=max_iter, tol=tol, constraint_tol=tol)
    # scnn records its metrics at EVERY iteration; the defaults (objective, squared subgradient norm,
    # time) reuse what the iteration computed.  model_loss costs an extra objective per iteration.
    metrics = Metrics(model_loss=verify)
    t0 = time.perf_counter()
    m, metrics = optimize_model(m, solver, metrics, x, y, regularizer=NeuronGL1(lam), return_convex=True,
                                unitize_data=False, dtype="float64", device="cpu")
    seconds = time.perf_counter() - t0
    g = np.asarray(m.G)  # scnn drops empty / duplicate patterns and reorders the gates
    its = len(metrics.objective) - 1  # one record before the loop, one per iteration
    rec = dict(seconds=seconds, solver_seconds=float(metrics.time[-1]), iterations=f"≈{its}",
               grad_norm_sq=float(metrics.grad_norm[-1]), scnn_patterns=g.shape[1],
               status=("max-iterations" if its >= max_iter else "stopped")
               + f", ‖grad‖² {float(metrics.grad_norm[-1]):.1e}")
    if verify:  # loss + penalty without the AL terms
        rec["scnn_objective"], rec["scnn_field"] = float(metrics.model_loss[-1]), "scnn model_loss"
    elif model == "gated":  # R-FISTA's objective metric is loss + penalty
        rec["scnn_objective"], rec["scnn_field"] = float(metrics.objective[-1]), "scnn objective"
    if model == "gated":
        u = np.asarray(m.parameters[0][0]).T
        rec["net"] = {"U": u, "a": np.ones(u.shape[1]), "gates": g}
    else:
        v, w = np.asarray(m.parameters[0][0]).T, np.asarray(m.parameters[1][0]).T
        rec["cones"] = (g, v, w)
    return rec


def cvxpy_solve(model: str, x, y, gates, lam) -> dict:
    import cvxpy as cp

    n, d = x.shape
    t0 = time.perf_counter()
    dm = (x @ gates >= 0).astype(float)
    if model == "gated":
        u = cp.Variable((d, gates.shape[1]))
        pred, pen, cons = cp.sum(cp.multiply(dm, x @ u), axis=1), cp.sum(cp.norm(u, 2, axis=0)), []
    else:
        v, w = cp.Variable((d, gates.shape[1])), cp.Variable((d, gates.shape[1]))
        s = 2 * dm - 1
        pred = cp.sum(cp.multiply(dm, x @ (v - w)), axis=1)
        pen = cp.sum(cp.norm(v, 2, axis=0)) + cp.sum(cp.norm(w, 2, axis=0))
        cons = [cp.multiply(s, x @ v) >= 0, cp.multiply(s, x @ w) >= 0]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(pred - y) / (2 * n) + lam * pen), cons)
    prob.solve(solver=cp.CLARABEL)
    rec = dict(seconds=time.perf_counter() - t0, solver_seconds=prob.solver_stats.solve_time,
               iterations=prob.solver_stats.num_iters, status=str(prob.status), cvxpy_objective=prob.value)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        rec["error"] = f"CVXPY status {prob.status}"
    elif model == "gated":
        rec["net"] = {"U": u.value, "a": np.ones(gates.shape[1]), "gates": gates}
    else:
        rec["cones"] = (gates, v.value, w.value)
    return rec


def adam_solve(x, y, lam, width, lrs, epochs, seed, threads, budget) -> dict:
    """Adam per lr; a run still going when the grid has used `budget` seconds is cut short (and
    says so), later lrs are not started: the best of what ran is reported, never a timeout."""
    import torch

    torch.set_num_threads(threads)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    p = x.shape[1] - 1
    runs, start = [], time.perf_counter()
    for lr in lrs:
        if time.perf_counter() - start > budget:
            runs.append(dict(lr=lr, skipped="time budget spent"))
            continue
        g = torch.Generator().manual_seed(seed)  # nn.Linear(p, m) + nn.Linear(m, 1, bias=False)
        unif = lambda shape, bound: (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * bound  # noqa: E731
        w1, b1, w2 = unif((width, p), 1 / math.sqrt(p)), unif((width,), 1 / math.sqrt(p)), unif((width,), 1 / math.sqrt(width))
        u = torch.cat([w1.T, b1[None, :]], 0).contiguous().requires_grad_()
        a = w2.clone().requires_grad_()
        opt = torch.optim.Adam([u, a], lr=lr)
        t0 = time.perf_counter()
        done = epochs
        for epoch in range(epochs):
            if epoch % 50 == 0 and time.perf_counter() - start > budget:
                done = epoch
                break
            opt.zero_grad(set_to_none=True)
            f = 0.5 * ((torch.relu(xt @ u) @ a - yt) ** 2).mean() + 0.5 * lam * (u.square().sum() + a.square().sum())
            f.backward()
            opt.step()
        sec = time.perf_counter() - t0
        net = {"U": u.detach().numpy().copy(), "a": a.detach().numpy().copy(), "gates": None}
        obj = network_objective(x, y, lam, net)
        runs.append(dict(lr=lr, seconds=sec, epochs=done, objective=obj if math.isfinite(obj) else None, net=net))
    ok = [r for r in runs if r.get("objective") is not None]
    if not ok:
        return dict(error="all learning rates diverged", runs=runs)
    best = min(ok, key=lambda r: r["objective"])
    total = sum(r.get("seconds", 0) for r in runs)
    cut = [f"{r['lr']:g}" for r in runs if r.get("skipped") or r.get("epochs", epochs) < epochs]
    return dict(seconds=best["seconds"], iterations=best["epochs"], net=best["net"], grid_seconds=total,
                status=f"lr {best['lr']:g}, width {width}, grid {total:.1f} s"
                + (f", cut by the time budget: lr {', '.join(cut)}" if cut else ""),
                runs=[{k: v for k, v in r.items() if k != "net"} for r in runs])


WORKERS = {"scnn": scnn_solve, "cvxpy": cvxpy_solve, "adam": adam_solve}


def _worker(name, kwargs, conn):
    try:
        conn.send(WORKERS[name](**kwargs))
    except BaseException:  # noqa: BLE001 -- report every failure, keep going
        conn.send({"error": traceback.format_exc(limit=4)})
    conn.close()


def isolated(name: str, kwargs: dict, timeout: float) -> dict:
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(name, kwargs, send))
    t0 = time.perf_counter()
    proc.start()
    send.close()
    res = None
    if recv.poll(timeout + 30):  # process start and imports are not counted in the methods' times
        try:
            res = recv.recv()
        except EOFError:
            proc.join(5)
            res = {"error": f"worker died (exit code {proc.exitcode}; out of memory?)"}
    if res is None or (res.get("seconds") or 0) > timeout:
        proc.kill()
        res = {"timeout": True, "error": f"timeout after {timeout:g} s", "seconds": timeout}
    proc.join()
    res.setdefault("wall_with_startup", time.perf_counter() - t0)
    return res


# ------------------------------------------------------------------------------------------
# One group: (data, P, lambda)
# ------------------------------------------------------------------------------------------


def run_group(args, ds: dict, P: int, gates: np.ndarray, gates_csv: Path, lam: float, work: Path) -> list[dict]:
    x, y, prep = ds["x"], ds["y"], ds["prep"]
    n, d = x.shape
    ties = int((x @ gates == 0).sum())  # scnn's 1[Xg > 0] differs from 1[Xg >= 0] only there
    rows = []
    for method in [m for m in ALL_METHODS if m in args.methods]:
        fam = FAMILY[method]
        row = dict(data=ds["name"], n=n, d=d, P=gates.shape[1], P_asked=P, **{"lambda": lam}, method=method,
                   family=fam, gate_ties=ties, _ts=prep["target_scale"],
                   _rtol=args.check_rtol if method.startswith("cvxnn") else args.scnn_check_rtol)
        print(f"  {ds['name']} P {gates.shape[1]} lambda {lam:g}: {method} ...", file=sys.stderr, flush=True)
        busy0, own0, t0 = *busy_jiffies(), time.perf_counter()
        if method.startswith("cvxnn"):
            res = cvxnn_run(args, fam, ds["train_csv"], gates_csv, lam, work / f"{method}_P{P}_l{lam:g}", prep)
        elif method.startswith("scnn"):
            res = isolated("scnn", dict(model=fam, x=x, y=y, gates=gates, lam=lam, tol=args.scnn_tol,
                                        max_iter=args.max_iter, verify=args.scnn_verify), args.timeout)
        elif method.startswith("cvxpy"):
            if n * gates.shape[1] > args.cvxpy_max_size:
                res = {"skipped": f"skipped: n P = {n * gates.shape[1]:.2g} > --cvxpy-max-size {args.cvxpy_max_size:.2g}"}
            else:
                res = isolated("cvxpy", dict(model=fam, x=x, y=y, gates=gates, lam=lam), args.timeout)
        else:
            done = {r["method"]: r for r in rows}
            width = next((done[m]["neurons"] for m in ("cvxnn-relu", "cvxnn-gated")
                          if done.get(m, {}).get("neurons")), args.adam_width)
            res = isolated("adam", dict(x=x, y=y, lam=lam, width=width, lrs=args.adam_lrs, epochs=args.epochs,
                                        seed=args.seed, threads=args.threads, budget=args.timeout), args.timeout + 60)
        if "cones" in res:  # a ReLU program's solution: score the ReLU network it defines
            g, v, w = res.pop("cones")
            res["convex_objective"], res["violation"] = convex_relu(x, y, lam, g, v, w)
            res["net"] = {"U": np.hstack([v, w]), "a": np.r_[np.ones(v.shape[1]), -np.ones(w.shape[1])],
                          "gates": None}
        busy1, own1 = busy_jiffies()  # CPUs other processes kept busy meanwhile (timings unreliable if > ~0.3)
        res["others_cpu"] = max(busy1 - busy0 - (own1 - own0), 0.0) / max(time.perf_counter() - t0, 1e-9)
        net = res.pop("net", None)
        row.update(res)
        if net is not None:
            row["objective"] = network_objective(x, y, lam, net)
            row["neurons"] = neurons(net)
            row["train"] = metric(x, ds["y_raw"], prep, net)
            row["test"] = metric(ds["x_test"], ds["y_test_raw"], prep, net)
            check(row)
        tag = row.get("error") or row.get("skipped") or f"{row['objective']:.10e}  {row['seconds']:.2f} s"
        print(f"    {tag.strip().splitlines()[-1] if tag.strip() else ''}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def compare(rows: list[dict]) -> list[dict]:
    """Keeps the last row of each (data, P, lambda, method), in first-seen order, and adds the
    relative gaps and the speed-ups of each (data, P, lambda) group."""
    key = lambda r: (r["data"], r["P"], r["lambda"])  # noqa: E731
    last = {(*key(r), r["method"]): r for r in rows}
    rows = [r for r in last.values()]
    order = list(dict.fromkeys(map(key, rows)))
    rows.sort(key=lambda r: (order.index(key(r)), ALL_METHODS.index(r["method"])))
    for r in rows:
        grp = [o for o in rows if key(o) == key(r) and o["family"] == r["family"]]
        progs = [o["objective"] for o in grp if o["method"] != "adam" and o.get("objective") is not None]
        if r.get("objective") is not None and progs:  # gap to the best solution of the program
            r["rel_gap"] = (r["objective"] - min(progs)) / abs(min(progs))
        if r["method"].startswith("cvxnn") and r.get("objective") is not None:
            for peer in ("scnn", "cvxpy"):  # peer wall time / cvxnn wall time
                q = next((o for o in grp if o["method"] == f"{peer}-{r['family']}"), None)
                if q and (q.get("objective") is not None or q.get("timeout")):
                    r[f"speedup_{peer}"] = (">" if q.get("timeout") else "") + f"{q['seconds'] / r['seconds']:.1f}"
    return rows


def check(row: dict) -> None:
    """Cross-checks of the method's own objective against this script's; adds `check`."""
    obj = row["objective"]
    if row["method"].startswith("cvxnn"):
        rep = row["report"]
        ref = rep["network_objective"]
        rel = abs(obj - ref) / abs(ref)
        row["check"] = dict(ours=obj, theirs=ref, field="report network_objective", rel=rel,
                            rel_vs_report_objective=abs(obj - rep["objective"]) / abs(rep["objective"]),
                            issues=[f"{k} {rep[k]} != {v}" for k, v in (("n_train", row["n"]), ("d", row["d"]),
                                                                       ("patterns", row["P"])) if rep[k] != v]
                            + ([f"target_scale {rep['target_scale']} != {row['_ts']}"]
                               if abs(rep["target_scale"] - row["_ts"]) > 1e-12 * row["_ts"] else []))
    if "check" in row:
        row["check"]["rtol"] = row["_rtol"]
    elif row.get("scnn_objective") is not None:
        ours = row.get("convex_objective", obj)
        row["check"] = dict(ours=ours, theirs=row["scnn_objective"], field=row["scnn_field"],
                            rel=abs(ours - row["scnn_objective"]) / abs(ours), issues=[])
    elif "cvxpy_objective" in row:
        ours = row.get("convex_objective", obj)
        row["check"] = dict(ours=ours, theirs=row["cvxpy_objective"], field="CVXPY problem value",
                            rel=abs(ours - row["cvxpy_objective"]) / abs(ours), issues=[])


# ------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------

COLS = ["data", "n", "d", "P", "λ", "method", "objective", "rel. gap", "s", "solver s", "iters", "neurons",
        "violation", "train", "test", "scnn/cvxnn time", "CVXPY/cvxnn time", "status"]


def fmt(v, spec):
    return "—" if v is None else format(v, spec)


def table(rows: list[dict]) -> str:
    out = ["| " + " | ".join(COLS) + " |", "|" + "---|" * len(COLS)]
    for r in rows:
        if r.get("objective") is not None:
            obj, status = f"{r['objective']:.8e}", r.get("status", "")
            if (r.get("others_cpu") or 0) > 0.3:
                status += f"; others used {r['others_cpu']:.1f} CPUs"
        else:
            obj = "timeout" if r.get("timeout") else ("skipped" if r.get("skipped") else "error")
            status = ((r.get("skipped") or r.get("error") or "").strip() or "—").splitlines()[-1][:80]
        cells = [r["data"], r["n"], r["d"], r["P"], f"{r['lambda']:g}", r["method"], obj,
                 fmt(r.get("rel_gap"), ".1e"), fmt(r.get("seconds"), ".2f"), fmt(r.get("solver_seconds"), ".2f"),
                 r.get("iterations", "—"), r.get("neurons", "—"), fmt(r.get("violation"), ".1e"),
                 r.get("train") or "—", r.get("test") or "—", r.get("speedup_scnn", ""), r.get("speedup_cvxpy", ""),
                 status]
        out.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(out)


def notes(args, env: dict, timeouts: str | None = None) -> str:
    return (
        f"Objective: (1/n) sum (f(x)-y)²/2 + λ sum ||u_k|| |a_k| (DESIGN section 0) of the network each method "
        f"returns, computed by bench/peers/run.py on the same preprocessed training data (z-scored, bias "
        f"column, targets / train std{' off' if args.no_scale_target else ''}); ReLU programs' solutions scored as the "
        f"ReLU network sum (Xv)₊ - (Xw)₊. scnn's (1/(2nc))||.||² + λ sum ||.|| with c = 1 and unitize_data=False "
        f"on the same X is the same function (checked against scnn's own objective). Rel. gap: to the best "
        f"program solution (lowest objective among the convex solvers) of the same data, P, λ and family (gated "
        f"ReLU or ReLU); Adam is compared with the ReLU program but is not restricted to its P patterns, so it "
        f"can be below it (negative gap). s: wall time of the cvxnn process / scnn optimize_model call / CVXPY "
        f"build+solve / best Adam run; solver s: cvxnn report `seconds`, scnn `time` metric, Clarabel solve "
        f"time; 'others used X CPUs': the load of other processes during that method (from /proc/stat). Speed-ups: peer s / cvxnn s (same model; '>' = peer timed out). Tolerance {args.tol:g}: cvxnn's "
        f"relative duality gap; scnn (tol {args.scnn_tol:g}) bounds the squared min-norm subgradient "
        f"(AL: also constraint_tol); Clarabel at its defaults. max-iter {args.max_iter} on both first-order sides (scnn iterations: "
        f"from its per-iteration metrics record). Adam: float64, full batch, {args.epochs} epochs, lr "
        f"{{{', '.join(f'{v:g}' for v in args.adam_lrs)}}}, width = cvxnn-relu's neurons. Train/test: R² "
        f"(accuracy at the label midpoint for 0/1 targets, fitted by squared loss), test fraction "
        f"{args.test_fraction:g}. {args.threads} thread(s) per method (RAYON/OMP/MKL/OPENBLAS/torch); "
        f"timeout {timeouts or format(args.timeout, 'g')} s per method; CVXPY skipped above n P = {args.cvxpy_max_size:.2g}. "
        f"cvxnn {env['cvxnn']}, pyscnn {env.get('scnn')}, CVXPY {env.get('cvxpy')} + Clarabel "
        f"{env.get('clarabel')}, PyTorch {env.get('torch')}, numpy {np.__version__}.")


def check_lines(rows: list[dict]) -> tuple[str, list[str]]:
    lines, problems = [], []
    for r in rows:
        ck = r.get("check")
        if not ck:
            continue
        bad = ck["rel"] > ck.get("rtol", 1e-9) or ck["issues"]
        if bad:
            problems.append(f"{r['data']} P {r['P']} λ {r['lambda']:g} {r['method']}: cross-check failed")
        extra = (f"; vs report objective {ck['rel_vs_report_objective']:.1e}" if "rel_vs_report_objective" in ck else "")
        lines.append(f"- {r['data']} P {r['P']} λ {r['lambda']:g} {r['method']}: ours {ck['ours']:.15e}, "
                     f"{ck['field']} {ck['theirs']:.15e}, rel. diff {ck['rel']:.1e}{extra}"
                     + (" FAIL " + "; ".join(ck["issues"]) if bad else ""))
    return "\n".join(lines), problems


def machine() -> str:
    try:
        info = dict(line.split(":", 1) for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if ":" in line)
        cpu = f"{info.get('Model name', '?').strip()}, {info.get('CPU(s)', '?').strip()} CPU(s)"
    except OSError:
        cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        kb = int(next(line.split()[1] for line in open("/proc/meminfo") if line.startswith("MemTotal")))
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    return cpu + mem


def busy_jiffies() -> tuple[float, float]:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    with open("/proc/stat") as fh:
        f = [int(v) for v in fh.readline().split()[1:]]
    t = os.times()
    return (sum(f) - f[3] - f[4]) / os.sysconf("SC_CLK_TCK"), t.user + t.system + t.children_user + t.children_system


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------


def parse_args(argv=None):
    fl = lambda s: [float(v) for v in s.replace(",", " ").split()]  # noqa: E731
    p = argparse.ArgumentParser(description="cvxnn vs scnn, CVXPY/Clarabel and Adam; see the docstring.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cvxnn", default=os.environ.get("CVXNN_BIN", str(REPO / "target/release/cvxnn")))
    p.add_argument("--cvxnn-args", default="", help="extra `cvxnn train` arguments")
    p.add_argument("--data", nargs="+", default=["diabetes", "breast_cancer", "synth:n=5000,d=20"])
    p.add_argument("--target", default="y")
    p.add_argument("--patterns", type=lambda s: [int(v) for v in fl(s)], default=[100], help="P list")
    p.add_argument("--lambdas", type=fl, default=[1e-3])
    p.add_argument("--methods", nargs="+", default=ALL_METHODS, help=" ".join(ALL_METHODS) + " (cvxpy = both)")
    p.add_argument("--tol", type=float, default=1e-6)
    p.add_argument("--scnn-tol", type=float, help="scnn's tol (default: --tol); its tol bounds the squared "
                   "min-norm subgradient, so a smaller one asks for the accuracy of cvxnn's gap")
    p.add_argument("--scnn-verify", action="store_true",
                   help="also record scnn's model_loss (loss + penalty) at every iteration, to check its "
                        "objective on ReLU runs too; costs scnn an extra objective evaluation per iteration")
    p.add_argument("--max-iter", type=int, default=100000)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per method run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--gate-seed", type=int, default=0)
    p.add_argument("--no-scale-target", action="store_true")
    p.add_argument("--cvxpy-max-size", type=float, default=2e6, help="skip CVXPY when n * P exceeds this")
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--adam-lrs", type=fl, default=[1e-3, 1e-2, 1e-1])
    p.add_argument("--adam-width", type=int, default=50, help="Adam width when no cvxnn run gave one")
    p.add_argument("--seed", type=int, default=0, help="Adam initialization seed")
    p.add_argument("--check-rtol", type=float, default=1e-9, help="cvxnn cross-check tolerance")
    p.add_argument("--scnn-check-rtol", type=float, default=1e-9, help="scnn/CVXPY cross-check tolerance")
    p.add_argument("--markdown", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--append-results", action="store_true", help="append a section to bench/RESULTS.md")
    p.add_argument("--workdir", type=Path, help="keep CSVs, gates and cvxnn outputs here")
    p.add_argument("--render", nargs="+", metavar="JSON",
                   help="run nothing: report the rows of earlier --json files (with --markdown, --json, "
                        "--append-results), e.g. to merge a grid run in pieces")
    args = p.parse_args(argv)
    methods = []
    for m in args.methods:
        for mm in (["cvxpy-gated", "cvxpy-relu"] if m == "cvxpy" else [m]):
            if mm not in ALL_METHODS:
                p.error(f"unknown method {mm}")
            methods.append(mm)
    args.methods = methods
    if args.scnn_tol is None:
        args.scnn_tol = args.tol
    if not 0 <= args.test_fraction < 1:
        p.error("--test-fraction must be in [0, 1)")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render:
        return render(args)
    if any(m.startswith("cvxnn") for m in args.methods):
        exe = Path(args.cvxnn)
        if not (exe.is_file() and os.access(exe, os.X_OK)):
            die(f"cvxnn binary not found: {exe}\n  build it with `cargo build --release -p cvxnn-cli` "
                "or pass --cvxnn PATH (env CVXNN_BIN)")
    env = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), machine=machine(),
               command=shlex.join(["python3", "bench/peers/run.py", *sys.argv[1:]]), threads=args.threads,
               cvxnn=subprocess.run([args.cvxnn, "--version"], capture_output=True, text=True).stdout.strip()
               if Path(args.cvxnn).exists() else "(not used)",
               git_commit=subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                         capture_output=True, text=True).stdout.strip())
    from importlib.metadata import PackageNotFoundError, version
    for pkg, dist in (("scnn", "pyscnn"), ("cvxpy", "cvxpy"), ("clarabel", "clarabel"), ("torch", "torch")):
        try:
            env[pkg] = version(dist)
        except PackageNotFoundError:
            env[pkg] = None
    env["loadavg_start"] = os.getloadavg()
    busy0, own0, t0 = *busy_jiffies(), time.perf_counter()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="cvxnn-peers-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for spec in args.data:
            name, names, xtr, ytr, xte, yte = load_dataset(spec, args)
            folder = work / name
            folder.mkdir(exist_ok=True)
            write_csv(folder / "train.csv", names, xtr, ytr)
            prep = preprocess(xtr, ytr, not args.no_scale_target)
            ds = dict(name=name, prep=prep, train_csv=folder / "train.csv", x=design(prep, xtr),
                      y=ytr / prep["target_scale"], y_raw=ytr, x_test=design(prep, xte), y_test_raw=yte)
            print(f"{name}: n {len(ytr)} train / {len(yte)} test, d {prep['d']}, target scale "
                  f"{prep['target_scale']:.6g}", file=sys.stderr)
            for P in args.patterns:
                gates = sample_gates(ds["x"], P, args.gate_seed)
                gates_csv = folder / f"gates_P{P}.csv"
                np.savetxt(gates_csv, gates.T, delimiter=",", fmt="%.17g")
                for lam in args.lambdas:
                    rows += run_group(args, ds, P, gates, gates_csv, lam, folder)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    busy1, own1 = busy_jiffies()
    wall = time.perf_counter() - t0
    env.update(loadavg_end=os.getloadavg(), wall_seconds=wall,
               others_cpu=max(busy1 - busy0 - (own1 - own0), 0.0) / wall)
    return finish(args, args, [env], rows)


def finish(args, run_opts, envs: list[dict], rows: list[dict], timeouts: str | None = None) -> int:
    """Table, notes and cross-checks of `rows` (from one run or several --render JSONs)."""
    rows = compare(rows)
    checks, problems = check_lines(rows)
    ties = sorted({f"{r['data']} P {r['P']}: {r['gate_ties']}" for r in rows if r["gate_ties"]})
    if ties:  # scnn's patterns 1[Xg > 0] then differ from cvxnn's and CVXPY's 1[Xg >= 0]
        checks += "\n- entries with X g == 0 exactly (scnn's patterns differ there): " + ", ".join(ties)
    problems += [f"{r['data']} P {r['P']} λ {r['lambda']:g} {r['method']}: crashed" for r in rows
                 if r.get("error") and not r.get("timeout")]
    md = (table(rows) + "\n\n" + notes(run_opts, envs[0], timeouts) + "\n\nCross-checks (this script's objective vs "
          "the method's own):\n" + checks + "\n")
    print(md)
    if args.markdown:
        args.markdown.write_text(md)
    if args.json:
        clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
        args.json.write_text(json.dumps(dict(protocol=__doc__, environment=envs[0], environments=envs,
                                             options=vars(run_opts), rows=clean, problems=problems),
                                        indent=1, default=str))
    if args.append_results:
        la = [v for e in envs for v in (e["loadavg_start"][0], e["loadavg_end"][0])]
        oc = [e["others_cpu"] for e in envs]
        loads = (f"load average {min(la):.1f}-{max(la):.1f} at the starts and ends of the runs, other processes "
                 f"used {min(oc):.2f}-{max(oc):.2f} CPUs on average during them")
        shared = any(e["loadavg_start"][0] > 1.5 or e["others_cpu"] > 0.5 for e in envs)
        cmds = "\n".join(e["command"] for e in envs)
        section = ("\n## Peers: scnn, CVXPY/Clarabel, Adam (issue 5)\n\n"
                   + ("**Preliminary: machine shared with other builds.**\n\n" if shared else "")
                   + f"{envs[0]['date'][:10]}, {envs[0]['machine']}; commit {envs[0]['git_commit']}; "
                   f"{sum(e['wall_seconds'] for e in envs) / 60:.1f} min in all; {loads}.\n"
                   f"Command{'s' if len(envs) > 1 else ''} (from the repository root):\n\n```sh\n{cmds}\n```\n\n" + md)
        with open(REPO / "bench/RESULTS.md", "a") as fh:
            fh.write(section)
    if problems:
        print("problems:\n  " + "\n  ".join(problems), file=sys.stderr)
    return 1 if problems else 0


def render(args) -> int:
    """--render: the report of earlier runs' --json files, without running anything."""
    dumps = [json.loads(Path(f).read_text()) for f in args.render]
    envs = [e for d in dumps for e in d.get("environments", [d["environment"]])]
    opts = parse_args([])  # defaults, then the first run's options
    opts.__dict__.update({k: v for k, v in dumps[0]["options"].items() if v is not None})
    rows = [r for d in dumps for r in d["rows"]]
    timeouts = "/".join(sorted({format(float(d["options"]["timeout"]), "g") for d in dumps}, key=float))
    return finish(args, opts, envs, rows, timeouts)


if __name__ == "__main__":
    sys.exit(main())
