#!/usr/bin/env python3
"""cvxnn's CNN models against the same CNN trained by Adam in PyTorch, on digits (issue 7).

Protocol
========
Data: ``examples/data/digits.csv`` (8x8 images, 64 pixel columns, label ``y``), split here with a
seeded permutation (``--seed``, ``--test-fraction``) into ``train.csv`` / ``test.csv`` in a
scratch directory; both sides train on the same training rows and are scored on the same test rows.
Tasks: ``binary`` (digit 0 against the rest; labels 0/1, cvxnn maps them to -1/+1) and
``multiclass`` (10 classes).

Network (DESIGN section 2), identical on both sides::

    f(x) = sum_j a_j sum_k (x_k^T u_j + b_j)_+        (sum pooling over the K patches)
    F    = (1/n) sum_i loss(f(x_i), y_i) + (lambda/2) sum_j (||u_j||^2 + b_j^2 + ||a_j||^2)

on features divided by one global scale ``s`` = the largest absolute training pixel (what cvxnn
does), logistic loss on +-1 labels (binary) or softmax cross-entropy (multiclass, ``a_j`` in
R^c). cvxnn's multiclass CNN connects each filter to one class (the separate-output program);
Adam trains the dense ``Linear(m, c)`` head, a superset of that architecture. Cases with
``--pool avg:S`` / ``--pool max:S`` replace the sum by ``AvgPool2d(S)`` / ``MaxPool2d(S)`` over
the ``a`` windows and ``a_j`` by ``a_j in R^a`` (``Linear(m a, 1)``, the exported layout); cvxnn
solves the per-window program (each filter feeds one window, a sub-architecture), Adam trains
the full one.

1. cvxnn: ``cvxnn train --data train.csv --test-fraction 0 --input-shape 1,8,8 --kernel K
   --lambda L --out DIR --force --json --quiet`` plus the case's arguments; from ``report.json``:
   ``objective``, ``network_objective``, ``relative_gap``, ``status``, filters, solver seconds;
   the process is timed too. ``cvxnn predict`` on ``test.csv`` gives the test accuracy.
2. Cross-check: the saved ``model.safetensors`` is read back here (PyTorch naming: ``0.weight``,
   ``0.bias``, the output layer, ``gate.*`` for gated models), the scale ``s`` refolded, and the
   objective above recomputed in PyTorch; it must equal cvxnn's ``network_objective`` to
   ``--crosscheck-rtol``: both sides measure the same objective.
3. Adam: float64, full batch, ``--epochs`` epochs, lr in ``--lrs``, widths = cvxnn's filters
   times ``--width-factors`` (default 1), init like ``nn.Conv2d``/``nn.Linear`` (seeded). Gated cvxnn models are a different
   architecture (fixed gates), so the ReLU CNN's objective is the fair comparison for ``cnn-relu``;
   gated rows are listed for what a user gets per second. For every run: final objective, wall
   time, test accuracy, and the first time its objective fell to cvxnn's (``t(<=cvxnn)``).

Usage (repository root, release binary built)::

    /work/venv-bench/bin/python bench/vs_adam_cnn.py --markdown /tmp/cnn.md --json /tmp/cnn.json

Exit code 0 when every cvxnn run succeeded and every cross-check passed, else 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shlex
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

DEFAULT_CASES = [
    "binary|--model cnn-gated-relu --patterns 50",
    "binary|--model cnn-relu --patterns 20 --stride 2 --max-iter 5000",
    "multiclass|--model cnn-gated-relu --patterns 20 --stride 2 --tol 1e-5",
]


def read_digits(path: Path):
    with path.open() as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [r for r in rows[1:] if r]
    x = np.array([[float(v) for v in r[:-1]] for r in body])
    y = np.array([int(float(r[-1])) for r in body])
    return header, x, y


def write_csv(path: Path, header, x, y):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for xi, yi in zip(x, y):
            w.writerow([repr(float(v)) for v in xi] + [str(int(yi))])


def read_safetensors(path: Path) -> dict:
    raw = path.read_bytes()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + hlen])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F64", f"{name}: {info['dtype']}"
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[8 + hlen + a : 8 + hlen + b], dtype="<f8")
        out[name] = torch.tensor(arr.reshape(info["shape"]).copy())
    return out


def forward(x, w, b, head, gate_w=None, gate_b=None, stride=1, pool=None):
    """Conv (1 channel in, 8x8) -> (gated) ReLU -> pooling -> head.

    ``pool`` None: sum pooling, head (c, m). ``("avg"|"max", S)``: AvgPool2d/MaxPool2d(S) then
    Flatten (channel-major), head (c, m a) as cvxnn exports it.
    """
    pre = torch.nn.functional.conv2d(x, w, b, stride=stride)
    if gate_w is None:
        act = torch.relu(pre)
    else:
        act = (torch.nn.functional.conv2d(x, gate_w, gate_b, stride=stride) >= 0).to(pre.dtype) * pre
    if pool is None:
        pooled = act.sum(dim=(2, 3))
    elif pool[0] == "avg":
        pooled = torch.nn.functional.avg_pool2d(act, pool[1]).flatten(1)
    else:
        pooled = torch.nn.functional.max_pool2d(act, pool[1]).flatten(1)
    return pooled @ head.T


def parse_pool(case_args):
    """``--pool avg:S|max:S`` of a case, or None (sum pooling)."""
    m = re.search(r"--pool\s+(avg|max):(\d+)", case_args)
    return (m.group(1), int(m.group(2))) if m else None


def objective(z, y, task, lam, w, b, head):
    if task == "binary":
        data = torch.nn.functional.softplus(-y * z[:, 0]).mean()
    else:
        data = torch.nn.functional.cross_entropy(z, y)
    decay = (w**2).sum() + (b**2).sum() + (head**2).sum()
    return data + lam / 2 * decay


def accuracy(z, y, task):
    if task == "binary":
        pred = torch.where(z[:, 0] >= 0, 1.0, -1.0)
    else:
        pred = z.argmax(dim=1)
    return (pred == y).double().mean().item()


def run_cvxnn(args, case_args, task, train_csv, test_csv, work):
    out = work / "model"
    cmd = [
        args.cvxnn, "train", "--data", str(train_csv), "--test-fraction", "0",
        "--input-shape", "1,8,8", "--kernel", args.kernel, "--lambda", str(args.lam),
        "--task", task, "--seed", str(args.seed), "--out", str(out), "--force", "--json",
        "--quiet",
    ] + shlex.split(case_args)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.cvxnn_threads))
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        return {"error": p.stderr.strip()[-500:], "cmd": " ".join(cmd)}
    report = json.loads((out / "report.json").read_text())
    meta = json.loads((out / "model.json").read_text())
    preds = work / "pred.csv"
    q = subprocess.run(
        [args.cvxnn, "predict", "--model", str(out), "--data", str(test_csv), "--out",
         str(preds), "--force"], capture_output=True, text=True)
    if q.returncode != 0:
        return {"error": q.stderr.strip()[-500:], "cmd": "predict"}
    with preds.open() as f:
        rows = list(csv.DictReader(f))
    pred_labels = [r["prediction"] for r in rows]
    return {"cmd": " ".join(cmd), "wall": wall, "report": report, "meta": meta,
            "weights": read_safetensors(out / "model.safetensors"), "pred": pred_labels}


def crosscheck(res, x_train, y_train, task, lam, stride, pool):
    """Objective of cvxnn's saved network, recomputed here on the scaled features."""
    wts, meta = res["weights"], res["meta"]
    s = meta["feature_scale"]
    k = meta.get("patches") or res["report"]["patches"]
    w = wts["0.weight"] * s  # filters on raw features -> on features / s
    b = wts.get("0.bias", torch.zeros(w.shape[0], dtype=torch.float64))
    head_name = [n for n in wts if n.endswith(".weight") and n not in ("0.weight", "gate.weight")]
    head = wts[head_name[0]]
    if pool is None:
        head = head / k  # the Linear weight holds alpha * K (global average pooling)
    if "target_scale" in meta and task != "multiclass":
        head = head / meta["target_scale"]
    gw = wts.get("gate.weight")
    gb = wts.get("gate.bias")
    if gw is not None:
        gw = gw * s
    z = forward(x_train, w, b, head, gw, gb, stride, pool)
    return objective(z, y_train, task, lam, w, b, head).item()


def adam_runs(args, m, c, x_tr, y_tr, x_te, y_te, task, target_obj, stride, pool):
    runs = []
    torch.set_num_threads(args.threads)
    for width in sorted({max(m, 1) * k for k in args.width_factors}):
        for lr in args.lrs:
            g = torch.Generator().manual_seed(args.seed)
            fan_in = 1 * int(args.kernel.split("x")[0]) ** 2
            bw = 1 / np.sqrt(fan_in)
            w = ((torch.rand(width, 1, *[int(v) for v in args.kernel.split("x")],
                             generator=g, dtype=torch.float64) * 2 - 1) * bw).requires_grad_()
            b = ((torch.rand(width, generator=g, dtype=torch.float64) * 2 - 1) * bw).requires_grad_()
            # Linear(m a, c) after local pooling (a windows), Linear(m, c) after sum pooling.
            k = int(args.kernel.split("x")[0])
            side = (8 - k) // stride + 1
            windows = 1 if pool is None else (side // pool[1]) ** 2
            fan = width * windows
            head = ((torch.rand(c, fan, generator=g, dtype=torch.float64) * 2 - 1)
                    / np.sqrt(fan)).requires_grad_()
            opt = torch.optim.Adam([w, b, head], lr=lr)
            t0 = time.perf_counter()
            reached, best, final = None, float("inf"), float("inf")
            for epoch in range(args.epochs):
                opt.zero_grad()
                f = objective(forward(x_tr, w, b, head, stride=stride, pool=pool), y_tr, task, args.lam, w, b, head)
                f.backward()
                opt.step()
                val = f.item()
                if not np.isfinite(val):
                    break
                best = min(best, val)
                if reached is None and val <= target_obj:
                    reached = time.perf_counter() - t0
            secs = time.perf_counter() - t0
            with torch.no_grad():
                final = objective(forward(x_tr, w, b, head, stride=stride, pool=pool), y_tr, task, args.lam, w, b, head).item()
                acc = accuracy(forward(x_te, w, b, head, stride=stride, pool=pool), y_te, task)
            runs.append({"width": width, "lr": lr, "final": final, "best": best,
                         "seconds": secs, "test_acc": acc, "reached_cvxnn_s": reached})
    return runs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cvxnn", default=str(ROOT / "target/release/cvxnn"))
    ap.add_argument("--data", default=str(ROOT / "examples/data/digits.csv"))
    ap.add_argument("--cases", nargs="+", default=DEFAULT_CASES,
                    help="TASK|cvxnn args, TASK in binary, multiclass")
    ap.add_argument("--lam", type=float, default=1e-3)
    ap.add_argument("--kernel", default="3x3")
    ap.add_argument("--test-fraction", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=2000)
    ap.add_argument("--lrs", type=float, nargs="+", default=[1e-1, 1e-2, 1e-3])
    ap.add_argument("--width-factors", type=int, nargs="+", default=[1],
                    help="Adam widths = cvxnn filters times each factor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cvxnn-threads", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--crosscheck-rtol", type=float, default=1e-8)
    ap.add_argument("--markdown")
    ap.add_argument("--json")
    args = ap.parse_args()

    header, x, y = read_digits(Path(args.data))
    rng = np.random.default_rng(args.seed)
    perm = rng.permutation(len(y))
    n_test = int(round(args.test_fraction * len(y)))
    te, tr = perm[:n_test], perm[n_test:]
    s = np.abs(x[tr]).max()
    ok, results = True, []
    lines = [
        f"digits {len(tr)} train / {len(te)} test rows (seed {args.seed}), kernel {args.kernel}, "
        f"lambda {args.lam}, Adam float64 full batch {args.epochs} epochs, lr {args.lrs}, "
        f"{args.threads} torch thread(s), cvxnn RAYON_NUM_THREADS={args.cvxnn_threads}",
        "",
        "| task | method | width | objective | rel. gap | test acc | s | t(<=cvxnn) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for case in args.cases:
            task, case_args = case.split("|", 1)
            labels = (y == 0).astype(int) if task == "binary" else y
            train_csv, test_csv = tmp / f"{task}_train.csv", tmp / f"{task}_test.csv"
            write_csv(train_csv, header, x[tr], labels[tr])
            write_csv(test_csv, header, x[te], labels[te])
            x_tr = torch.tensor(x[tr] / s).reshape(-1, 1, 8, 8)
            x_te = torch.tensor(x[te] / s).reshape(-1, 1, 8, 8)
            if task == "binary":
                y_tr = torch.tensor(np.where(labels[tr] == 1, 1.0, -1.0))
                y_te = torch.tensor(np.where(labels[te] == 1, 1.0, -1.0))
                c = 1
            else:
                y_tr, y_te, c = torch.tensor(labels[tr]), torch.tensor(labels[te]), 10
            res = run_cvxnn(args, case_args, task, train_csv, test_csv, tmp)
            entry = {"task": task, "args": case_args}
            if "error" in res:
                ok = False
                entry["cvxnn_error"] = res["error"]
                lines.append(f"| {task} | cvxnn `{case_args}` | - | error | - | - | - | - |")
                results.append(entry)
                print(res["error"], file=sys.stderr)
                continue
            rep = res["report"]
            stride = int(re.search(r"--stride\s+(\d+)", case_args).group(1)) if "--stride" in case_args else 1
            pool = parse_pool(case_args)
            ours = crosscheck(res, x_tr, y_tr, task, args.lam, stride, pool)
            rel = abs(ours - rep["network_objective"]) / abs(rep["network_objective"])
            entry["crosscheck"] = {"torch": ours, "cvxnn": rep["network_objective"], "rel": rel}
            if not rel <= args.crosscheck_rtol:
                ok = False
            truth = [str(v) for v in labels[te]]
            acc = float(np.mean([p == t for p, t in zip(res["pred"], truth)]))
            m = rep.get("filters") or rep.get("neurons")
            entry["cvxnn"] = {"objective": rep["objective"],
                              "network_objective": rep["network_objective"],
                              "relative_gap": rep["relative_gap"], "status": rep["status"],
                              "filters": m, "solver_s": rep["seconds"], "wall_s": res["wall"],
                              "test_acc": acc, "cmd": res["cmd"]}
            lines.append(
                f"| {task} | cvxnn `{case_args}` ({rep['status']}) | {m} | "
                f"{rep['network_objective']:.5e} | {rep['relative_gap']:.1e} | {acc:.4f} | "
                f"{res['wall']:.1f} | - |")
            runs = adam_runs(args, m, c, x_tr, y_tr, x_te, y_te, task, rep["network_objective"],
                             stride, pool)
            entry["adam"] = runs
            for r in runs:
                reached = f"{r['reached_cvxnn_s']:.1f}" if r["reached_cvxnn_s"] is not None else "never"
                lines.append(
                    f"| {task} | Adam lr {r['lr']} | {r['width']} | {r['final']:.5e} | - | "
                    f"{r['test_acc']:.4f} | {r['seconds']:.1f} | {reached} |")
            lines.append(
                f"| {task} | cross-check | | torch {ours:.12e} vs cvxnn "
                f"{rep['network_objective']:.12e}, rel {rel:.1e} | | | | |")
            results.append(entry)
            print("\n".join(lines[-(len(runs) + 2):]), flush=True)
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
