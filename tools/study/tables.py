"""Markdown tables for docs/study/tables.md from the JSON reports of tools/study/run.sh (stdlib only)."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
SCORES = [("delta_energy", "ΔEnergy"), ("energy", "Energy"), ("mcm", "MCM"), ("max_logit", "MaxLogit")]
SETS = ["dtd", "mnist-test", "imagenet-ood"]


def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


def pct(x):
    return f"{100 * x:.1f}"


def main_table():
    print("| prompt | score | ID acc | covariate acc | " + " | ".join(
        f"{s} AUROC / FPR95" for s in SETS) + " | mean AUROC / FPR95 |")
    print("|---|---|---|---|" + "---|" * (len(SETS) + 1))
    for name, label in [("no-outliers", "zero-shot, before outlier exposure"), ("zero-shot", "zero-shot"),
                        ("coop", "CoOp (λ 0)"), ("ebm", "EBM (λ 1)")]:
        r = load(name)
        if r is None:
            continue
        for key, score in SCORES:
            cells = [r["scores"][key][s] for s in SETS]
            mean_auroc = sum(c["auroc"] for c in cells) / len(cells)
            mean_fpr = sum(c["fpr95"] for c in cells) / len(cells)
            print(f"| {label} | {score} | {pct(r['id_accuracy'])} | {pct(r['covariate_accuracy'])} | "
                  + " | ".join(f"{pct(c['auroc'])} / {pct(c['fpr95'])}" for c in cells)
                  + f" | {pct(mean_auroc)} / {pct(mean_fpr)} |")


def mean_of(r, key, metric):
    cells = [r["scores"][key][s] for s in SETS]
    return sum(c[metric] for c in cells) / len(cells)


def tau_label(tau, r):
    return f"{r['settings']['tau']:.3f} (own)" if tau == "own" else tau


def tau_c_table():
    print("| τ | c | ΔEnergy mean AUROC / FPR95 | Energy mean AUROC / FPR95 | MCM (τ_mcm 1) | MaxLogit |")
    print("|---|---|---|---|---|---|")
    for tau in ["own", "0.01", "0.1", "1"]:
        for c in ["1", "2", "3"]:
            r = load(f"zs-tau{tau}-c{c}")
            if r is None:
                continue
            row = [f"{pct(mean_of(r, k, 'auroc'))} / {pct(mean_of(r, k, 'fpr95'))}" for k, _ in SCORES]
            print(f"| {tau_label(tau, r)} | {c} | " + " | ".join(row) + " |")


def crop_table():
    print("| crop value v | ΔEnergy dtd | ΔEnergy mnist-test | ΔEnergy imagenet-ood | mean AUROC / FPR95 |")
    print("|---|---|---|---|---|")
    for v, name in [("-1", "zs-v-1"), ("0", "zs-tauown-c1"), ("0.5", "zs-v0.5")]:
        r = load(name)
        if r is None:
            continue
        cells = [r["scores"]["delta_energy"][s] for s in SETS]
        print(f"| {v} | " + " | ".join(f"{pct(c['auroc'])} / {pct(c['fpr95'])}" for c in cells)
              + f" | {pct(mean_of(r, 'delta_energy', 'auroc'))} / {pct(mean_of(r, 'delta_energy', 'fpr95'))} |")


def tuned_table(rows):
    print("| variant | ID acc | covariate acc | ΔEnergy mean AUROC / FPR95 | Energy | MCM | MaxLogit |")
    print("|---|---|---|---|---|---|---|")
    for name, label in rows:
        r = load(name)
        if r is None:
            continue
        row = [f"{pct(mean_of(r, k, 'auroc'))} / {pct(mean_of(r, k, 'fpr95'))}" for k, _ in SCORES]
        print(f"| {label} | {pct(r['id_accuracy'])} | {pct(r['covariate_accuracy'])} | " + " | ".join(row) + " |")


print("### Zero-shot vs CoOp vs EBM (AUROC / FPR@95TPR in %, higher / lower is better)\n")
main_table()
print("\n### τ and c of the scores (zero-shot prompt; mean over the three OOD sets)\n")
tau_c_table()
print("\n### The crop value v of ΔEnergy (zero-shot prompt, own τ, c 1; AUROC / FPR95)\n")
crop_table()
print("\n### λ (positive mask, predicted class)\n")
tuned_table([("coop", "λ 0 (CoOp)"), ("ebm-l0.1", "λ 0.1"), ("ebm-l0.3", "λ 0.3"), ("ebm", "λ 1"),
             ("ebm-l3", "λ 3"), ("ebm-l10", "λ 10")])
print("\n### Tuning learning rate (positive mask; CoOp's 0.002 is the default)\n")
tuned_table([("coop", "λ 0, lr 0.002"), ("lr0.05-l0", "λ 0, lr 0.05"), ("ebm", "λ 1, lr 0.002"),
             ("lr0.05-l1", "λ 1, lr 0.05")])
print("\n### Mask rule (λ 1)\n")
tuned_table([("ebm", "positive, predicted class"), ("ebm-negative", "negative, predicted class"),
             ("ebm-top-fraction:0.1", "top 10 %, predicted class"), ("ebm-label", "positive, label")])
