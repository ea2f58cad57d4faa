#!/usr/bin/env python
"""Issue 20 research loop: replay CSL rounds on a package cache (``offline_benchmark.py`` output) with other routing
rules and consistency filters, in plain PyTorch with the package's recipe (`routing_rounds.train_head`, seeded as
the trainer seeds it). Selection seeds only; the fresh-seed numbers come from the package itself.

    python benchmarks/research20.py --runs /work/r20/bench/animal_mnist-perm-auto-steps100-gates-seed{0,1,2} \\
        --methods student/top3,oracle/top3,student/pc3 --out /work/r20/sel.json

A method is ``route/filter``. Routes: ``student`` (the paper), ``oracle`` (diagnostic), ``oos_gate`` (gate teachers,
one extra teacher per specialist), ``em`` (posterior over specialists ∝ Σ_{c∈S_t} p_s(c) p_t(c)), ``poe`` (product
over the hierarchy's levels of each class's specialists with the student), ``sk<steps>_<route>`` /
``skg<steps>`` (the previous student balanced to the uniform class prior by Sinkhorn steps: its class probabilities /
its mass per specialty; docs/denoise_research.md §12). Filters: ``top1..top3``/``all`` (the
paper: global keep rate, smallest loss over the whole split), ``pcK`` (the same keep rate, smallest loss within each
teacher label), ``genK`` / ``knnK`` / ``massK`` (see `filter_keep`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from routing_rounds import train_head  # noqa: E402

from csl_hf.method import consistency as C  # noqa: E402
from csl_hf.cache import TEST_SPLIT, TRAIN_SPLIT, CSLCache  # noqa: E402


class Replay:
    def __init__(self, run_dir: str, epochs: int = 20):
        with open(os.path.join(run_dir, "csl_report.json")) as f:
            self.report = json.load(f)
        cache = CSLCache.load(os.path.join(run_dir, "cache"))
        self.seed = int(self.report["seed"])
        self.epochs = epochs
        tr, te = cache.rows(TRAIN_SPLIT), cache.rows(TEST_SPLIT)
        self.num = cache.num_labels
        self.x_tr, self.x_te = cache.features[tr].float(), cache.features[te].float()
        self.y_tr, self.y_te = cache.labels[tr], cache.labels[te]
        self.P_tr = cache.teacher_probs[:, tr].float()
        self.P_te = cache.teacher_probs[:, te].float()
        self.levels = cache.levels
        self.masks = C.class_masks(cache.specialties, self.num)
        self.ins = cache.in_specialty[:, tr].float() if cache.in_specialty is not None else None
        self.weak = C.accuracy(self.P_te[0], self.y_te)
        self.names = [cache.id2label[i] for i in range(self.num)]
        self._knn = None
        self.domains_tr = cache.domains[tr] if cache.domains is not None else None
        if self.domains_tr is not None:
            self.teacher_domains = torch.tensor([cache.domain_names.index(s["domain"]) if "domain" in s else -1
                                                 for s in cache.specialties])

    # ----------------------------------------------------------------------------------------------- helpers
    def owner(self, level):
        return C._class_owner(self.masks[self.levels[level]])

    def knn(self, k=10):
        """``[N, k]`` nearest neighbours (cosine) of each training sample, itself excluded (computed once for 50)."""
        assert k <= 50
        k = 50
        if self._knn is None:
            z = F.normalize(self.x_tr, dim=-1)
            idx = []
            for s in range(0, len(z), 1000):
                sim = z[s:s + 1000] @ z.T
                sim[torch.arange(sim.shape[0]), torch.arange(s, s + sim.shape[0])] = -2
                idx.append(sim.topk(k, dim=-1).indices)
            self._knn = torch.cat(idx)
        return self._knn

    @torch.no_grad()
    def evaluate(self, head):
        te = head(self.x_te)
        pred = te.argmax(-1)
        per_class = [float((pred[self.y_te == c] == c).float().mean()) for c in range(self.num)]
        return head(self.x_tr), C.accuracy(te, self.y_te), per_class

    def pgr(self, acc):
        return 100.0 * (acc - self.weak) / (self.ceiling - self.weak)

    def setup(self):
        head = train_head(self.x_tr, self.y_tr, self.num, self.epochs, self.seed, phase=-1)
        _, self.ceiling, _ = self.evaluate(head)
        head = train_head(self.x_tr, self.P_tr[0].argmax(-1), self.num, self.epochs, self.seed, phase=0)
        self.level0 = self.evaluate(head)
        return self

    # ----------------------------------------------------------------------------------------------- routes
    def smooth(self, prev: torch.Tensor, k: int = 10) -> torch.Tensor:
        """log of the previous student's probabilities averaged over each sample's k nearest neighbours (cosine, the
        student's features, the sample itself excluded)."""
        return prev.float().softmax(-1)[self.knn(max(k, 10))[:, :k]].mean(1).clamp_min(1e-12).log()

    def crossfit(self, folds: int) -> torch.Tensor:
        """The previous round's student refitted on K folds: each sample's logits from the head that did not train on
        it (out-of-sample predictions, as in co-divide / cross-validation label cleaning)."""
        keep, tc, epochs, phase = self.last_fit
        n = len(tc)
        fold = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 31 + phase)) % folds
        out = torch.empty(n, self.num)
        for f in range(folds):
            train = keep & (fold != f)
            head = train_head(self.x_tr[train], tc[train], self.num, epochs, self.seed, phase=phase + 1000 * (f + 1))
            with torch.no_grad():
                out[fold == f] = head(self.x_tr[fold == f])
        return out

    def targets(self, route: str, level: int, prev: torch.Tensor):
        """``(target_class [N], route [N])``."""
        if route.startswith("da"):  # distribution alignment of the previous student before routing: da<prior>_<route>
            prior, _, rest = route[2:].partition("_")
            ps = prev.float().softmax(-1)
            target = self.P_tr[0].mean(0) if prior == "gen" else torch.full((self.num,), 1.0 / self.num)
            aligned = ps * (target / ps.mean(0)).unsqueeze(0)
            return self.targets(rest or "student", level, aligned.clamp_min(1e-12).log())
        if route.startswith("sk") and not route.startswith("skg"):  # Sinkhorn: the previous student's probabilities balanced to the uniform class
            it, _, rest = route[2:].partition("_")  # prior over the training split before routing: sk<iters>_<route>
            q = prev.float().softmax(-1)
            prior = torch.full((self.num,), 1.0 / self.num)
            for _ in range(int(it or 20)):
                q = q * (prior / q.mean(0)).unsqueeze(0)
                q = q / q.sum(-1, keepdim=True)
            return self.targets(rest or "student", level, q.clamp_min(1e-12).log())
        if route.startswith("cf"):  # any route, with a cross-fitted previous student: cf<K>_<route>
            k, _, rest = route[2:].partition("_")
            return self.targets(rest or "student", level, self.crossfit(int(k or 2)))
        if route.startswith("vote"):  # any route, then each label replaced by its k neighbours' majority label
            k, _, rest = route[4:].partition("_")
            tc, a = self.targets(rest or "student", level, prev)
            vote = F.one_hot(tc[self.knn(int(k))[:, :int(k)]], self.num).float().sum(1)
            vote += 0.5 * F.one_hot(tc, self.num).float()  # ties go to the sample's own label
            return vote.argmax(-1), a
        if route.startswith("knn"):  # any route, with the neighbour-smoothed student: knn<k>_<route>
            k, _, rest = route[3:].partition("_")
            return self.targets(rest or "student", level, self.smooth(prev, int(k or 10)))
        members = self.levels[level]
        P, masks = self.P_tr[members], self.masks[members]
        if route == "agreement":
            a = C.assign_by_agreement(prev, P)
        elif route == "oracle" and self.domains_tr is not None:
            a = C.assign_by_oracle_domain(self.domains_tr, self.teacher_domains[members])
        elif route == "student":
            a = C.assign_by_student(prev, masks)
        elif route == "oracle":
            a = C.assign_by_oracle_class(self.y_tr, masks)
        elif route.startswith("skg"):  # the student's mass per specialty balanced (Sinkhorn) to each specialty's
            g = C.specialty_mass(prev, masks)  # share of the classes (uniform class prior), then its argmax
            prior = masks.float().sum(-1) / self.num
            for _ in range(int(route[3:] or 20)):
                g = g * (prior / g.mean(0)).unsqueeze(0)
                g = g / g.sum(-1, keepdim=True)
            a = g.argmax(-1)
        elif route == "oos_gate":
            gate = C.specialist_gate(prev, masks, self.ins[members])
            tc = C.gated_targets(gate, P).argmax(-1)
            return tc, self.owner(level)[tc]
        elif route == "em":
            ps = prev.float().softmax(-1)
            a = torch.einsum("nc,tnc->nt", ps, P).argmax(-1)
        elif route.startswith("poe"):
            # each class scored by the student and by its owner at levels j0..level (poe: 0, poeS: 1, poeP: level-1)
            kind, w = route[3:4] if route[3:4] in ("S", "P") else "", float(route[3:].lstrip("SP") or 1)
            j0 = {"": 0, "S": 1, "P": max(1, level - 1)}[kind]
            score = prev.float().log_softmax(-1)
            for j in range(j0, level + 1):
                own = self.owner(j)
                pj = self.P_tr[self.levels[j]]  # [T, N, C]
                pc = pj[own, :, torch.arange(self.num)].T  # [N, C]: class c's prob under its owner at level j
                score = score + w * pc.clamp_min(1e-6).log()
            tc = score.argmax(-1)
            return tc, self.owner(level)[tc]
        elif route.startswith("hme"):
            # gate over the level's groups: student mass x, for each earlier level j, the soft-gate mixture of
            # level j (student mass on j's groups x j's specialists) summed over the group
            w = float(route[3:] or 1)
            ps = prev.float().softmax(-1)
            logg = C.specialty_mass(prev, masks).clamp_min(1e-12).log()
            for j in range(1, level):
                mj = self.masks[self.levels[j]]
                q = C.soft_gate_targets(prev, self.P_tr[self.levels[j]], mj)  # [N, C]
                logg = logg + w * (q @ masks.float().T).clamp_min(1e-12).log()
            a = logg.argmax(-1)
        else:
            raise ValueError(route)
        tc = P[a, torch.arange(len(a))].argmax(-1)
        return tc, a

    # ----------------------------------------------------------------------------------------------- filters
    def filter_keep(self, filt: str, prev: torch.Tensor, tc: torch.Tensor, level: int):
        """``(keep [N] bool, rate)``."""
        n = len(tc)
        loss = F.cross_entropy(prev, tc, reduction="none")
        if filt == "all":
            return torch.ones(n, dtype=torch.bool), 1.0
        if filt.startswith("top"):
            return C.consistency_filter(prev, tc, filt)
        if "&" in filt:  # both filters
            f1, f2 = filt.split("&")
            k1, _ = self.filter_keep(f1, prev, tc, level)
            k2, r2 = self.filter_keep(f2, prev, tc, level)
            return k1 & k2, r2
        if filt.startswith("agree"):  # keep the samples whose label is their k neighbours' majority label
            k = int(filt[5:] or 10)
            vote = F.one_hot(tc[self.knn(k)[:, :k]], self.num).float().sum(1) + 0.5 * F.one_hot(tc, self.num).float()
            keep = vote.argmax(-1) == tc
            return keep, float(keep.float().mean())
        if filt.startswith("it"):  # agree, twice: the second vote counts only the neighbours kept by the first
            k = int(filt[2:] or 10)
            nb = self.knn(k)[:, :k]
            keep = torch.ones(len(tc), dtype=torch.bool)
            for _ in range(2):
                w = keep[nb].float().unsqueeze(-1)
                vote = (F.one_hot(tc[nb], self.num).float() * w).sum(1) + 0.5 * F.one_hot(tc, self.num).float()
                keep = vote.argmax(-1) == tc
            return keep, float(keep.float().mean())
        if filt.startswith("sh"):  # keep when the own label's share among the k neighbours is >= theta: sh<k>_<theta>
            k, theta = filt[2:].split("_")
            k, theta = int(k), float(theta)
            share = (tc[self.knn(k)[:, :k]] == tc.unsqueeze(-1)).float().mean(-1)
            keep = share >= theta
            return keep, float(keep.float().mean())
        if filt.startswith("rk"):  # rank by the own label's neighbour share (then the previous student's loss),
            k, kk = int(filt[2:-1]), int(filt[-1])  # keep the top-k hit rate's share of samples: rk<k><topk>
            share = (tc[self.knn(k)[:, :k]] == tc.unsqueeze(-1)).float().mean(-1)
            rate = int(C.topk_hits(prev, tc, kk).sum()) / len(tc)  # the paper's keep rate
            return C.keep_smallest(-share + 1e-3 * loss / (1 + loss.max()), rate), rate
        if filt.startswith("s"):  # the same filter judged by the neighbour-smoothed student: s<filter>
            return self.filter_keep(filt[1:], self.smooth(prev), tc, level)
        k = int(filt[-1])
        kind = filt[:-1]
        rate = int(C.topk_hits(prev, tc, k).sum()) / len(tc)
        if kind == "pc":  # per teacher label: the same rate, smallest loss within each label
            return per_label_keep(loss, tc, rate, self.num), rate
        if kind == "pch":  # per-label hit rate (floored at half the global rate), smallest loss within the label
            hits = C.topk_hits(prev, tc, k)
            keep = torch.zeros(n, dtype=torch.bool)
            for c in range(self.num):
                m = (tc == c).nonzero().flatten()
                if len(m) == 0:
                    continue
                r = max(float(hits[m].float().mean()), rate / 2)
                keep[m[torch.sort(loss[m], stable=True).indices[:math.ceil(r * len(m) - 1e-6)]]] = True
            return keep, rate
        raise ValueError(filt)

    # ----------------------------------------------------------------------------------------------- run
    def run(self, method: str) -> dict:
        route, filt = method.split("/")
        prev, acc0, pc0 = self.level0
        rounds = [{"level": 0, "acc": acc0, "pgr": self.pgr(acc0), "keep": 1.0, "worst": min(pc0)}]
        self.last_fit = (torch.ones(len(self.y_tr), dtype=torch.bool), self.P_tr[0].argmax(-1), self.epochs, 0)
        for level in range(1, len(self.levels)):
            tc, a = self.targets(route, level, prev)
            keep, rate = self.filter_keep(filt, prev, tc, level)
            epochs = C.scaled_epochs(self.epochs, float(keep.float().mean()))
            head = train_head(self.x_tr[keep], tc[keep], self.num, epochs, self.seed, phase=level)
            self.last_fit = (keep, tc, epochs, level)
            oracle = (C.assign_by_oracle_class(self.y_tr, self.masks[self.levels[level]]) if self.domains_tr is None
                      else C.assign_by_oracle_domain(self.domains_tr, self.teacher_domains[self.levels[level]]))
            _, precision, recall = C.label_quality(tc, self.y_tr, keep)
            prev, acc, pc = self.evaluate(head)
            rounds.append({"level": level, "acc": acc, "pgr": self.pgr(acc), "keep": float(keep.float().mean()),
                           "rate": rate, "precision": precision, "recall": recall,
                           "teacher_acc": float((tc == self.y_tr).float().mean()),
                           "assign_acc": float((a == oracle).float().mean()), "worst": min(pc),
                           "per_class": pc})
        return {"rounds": rounds}


def per_label_keep(loss: torch.Tensor, labels: torch.Tensor, rate: float, num: int) -> torch.Tensor:
    keep = torch.zeros(len(loss), dtype=torch.bool)
    for c in range(num):
        m = (labels == c).nonzero().flatten()
        if len(m):
            keep[m[torch.sort(loss[m], stable=True).indices[:math.ceil(rate * len(m) - 1e-6)]]] = True
    return keep


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", help="run folders of offline_benchmark.py / run_csl.py (with their cache)")
    p.add_argument("--methods", help="comma-separated route/filter methods")
    p.add_argument("--out", help="json results (appended/merged)")
    p.add_argument("--rerun", action="store_true")
    p.add_argument("--summary", metavar="JSON", help="print the mean ± std table of a results file instead")
    p.add_argument("summary_methods", nargs="?", help="with --summary: the comma-separated methods to show")
    a = p.parse_args()
    if a.summary:
        summarize(a.summary, a.summary_methods.split(",") if a.summary_methods else None)
        return
    if not (a.runs and a.methods and a.out):
        p.error("--runs, --methods and --out are required (or --summary JSON)")
    res = json.load(open(a.out)) if os.path.isfile(a.out) else {}
    for run_dir in a.runs:
        key = os.path.basename(run_dir.rstrip("/"))
        R = None
        entry = res.setdefault(key, {"runs": {}})
        for m in a.methods.split(","):
            if m in entry["runs"] and not a.rerun:
                continue
            if R is None:
                t = time.time()
                R = Replay(run_dir).setup()
                entry.update(weak=R.weak, ceiling=R.ceiling, seed=R.seed, names=R.names,
                             package_pgr=[r["pgr"] for r in R.report["rounds"]],
                             single=R.pgr(R.level0[1]))
            t = time.time()
            entry["runs"][m] = R.run(m)
            entry["runs"][m]["seconds"] = time.time() - t
            print(key, m, "PGR", ", ".join(f"{r['pgr']:.1f}" for r in entry["runs"][m]["rounds"]),
                  f"({time.time() - t:.1f} s)", flush=True)
            with open(a.out, "w") as f:
                json.dump(res, f)



def summarize(path: str, methods: list[str] | None = None, ref_oracle: str = "oracle/top3") -> None:
    """Mean ± std table over the runs in ``path``: best PGR (max over levels >= 1), the oracle with the same filter,
    fraction of that oracle's gain, fraction of today's oracle (``ref_oracle``) gain, worst-class accuracy at the
    best level, per-level keep / precision / assignment accuracy."""
    import statistics

    res = json.load(open(path))
    keys = list(res)
    def ms(v):
        v = [x for x in v if x == x]
        return "-" if not v else f"{v[0]:.1f}" if len(v) == 1 else f"{statistics.mean(v):.1f} ± {statistics.stdev(v):.1f}"
    methods = methods or [m for m in res[keys[0]]["runs"]]
    print(f"runs: {', '.join(keys)}")
    print("| method | PGR per level | keep % | precision % | assign acc % | best PGR (per seed) | own oracle best | "
          "frac. own oracle % (per seed) | frac. today's oracle % | worst class % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in methods:
        if not all(m in res[k]["runs"] for k in keys):
            continue
        route, filt = m.split("/")
        best, own, frac, frac_ref, worst, lv = [], [], [], [], [], []
        for k in keys:
            e = res[k]
            rs = e["runs"][m]["rounds"]
            b = max(range(1, len(rs)), key=lambda i: rs[i]["pgr"])
            best.append(rs[b]["pgr"])
            worst.append(100 * rs[b]["worst"])
            s = e["single"]
            orc = e["runs"].get(f"oracle/{filt}")
            ob = max(r["pgr"] for r in orc["rounds"][1:]) if orc else float("nan")
            own.append(ob)
            frac.append(100 * (best[-1] - s) / (ob - s))
            ref = e["runs"].get(ref_oracle)  # today's oracle, when the file has it
            rb = max(r["pgr"] for r in ref["rounds"][1:]) if ref else float("nan")
            frac_ref.append(100 * (best[-1] - s) / (rb - s))
            lv.append(rs)
        n = len(lv[0])
        col = lambda f, sc=1: ", ".join(ms([sc * x[i][f] for x in lv]).split(" ±")[0] for i in range(1, n))  # noqa
        print(f"| {m} | {' → '.join(ms([x[i]['pgr'] for x in lv]).split(' ±')[0] for i in range(n))} | "
              f"{col('keep', 100)} | {col('precision', 100)} | {col('assign_acc', 100)} | {ms(best)} "
              f"({', '.join(f'{b:.1f}' for b in best)}) | {ms(own)} | {ms(frac)} ({', '.join(f'{f:.1f}' for f in frac)}) "
              f"| {ms(frac_ref)} | {ms(worst)} |")


if __name__ == "__main__":
    main()
