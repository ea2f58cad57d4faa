"""The rounds loop of the routing research (`routing_research.py`): plain PyTorch, the package's recipe.

A fresh ``nn.Linear`` per round seeded as the package seeds it, Adam lr 1e-3, batch 100, cosine per step, 20 epochs,
``floor(E / r)`` epochs at keep rate ``r``, top-3 teacher-student filter; every routing option is one ``route`` of
`Rounds.targets_for`. Also the mean ± std tables over seeds (`summarize`).
"""

from __future__ import annotations

import math
import statistics
import sys

import torch
import torch.nn.functional as F

from csl_hf.method import consistency as C
from csl_hf.cache import TEST_SPLIT, TRAIN_SPLIT, CSLCache

def train_head(x, targets, num_labels, epochs, seed, phase, batch_size=100, lr=1e-3):
    """A fresh linear head, seeded as `CoSupervisedTrainer._fit` seeds it; Adam, cosine per step, no clipping."""
    head = torch.nn.Linear(x.shape[1], num_labels)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 1009 + phase + 1)
        head.reset_parameters()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    n = x.shape[0]
    per_epoch = math.ceil(n / batch_size)
    total = max(1, epochs * per_epoch)
    step = 0
    batch_seed = seed * 7919 + phase + 1
    for ep in range(epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(batch_seed * 1_000_003 + ep))
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / total))
            loss = F.cross_entropy(head(x[idx]), targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
    return head.eval()


class Rounds:
    """The data of one seed x hierarchy: features, the hierarchy's teacher probabilities, ground truth."""

    def __init__(self, cache: CSLCache, meta: dict, hierarchy: str, seed: int, epochs: int = 20):
        tr, te = cache.rows(TRAIN_SPLIT), cache.rows(TEST_SPLIT)
        self.seed, self.epochs, self.num = seed, epochs, cache.num_labels
        self.x_tr, self.x_te = cache.features[tr].float(), cache.features[te].float()
        self.y_tr, self.y_te = cache.labels[tr], cache.labels[te]
        specs, levels = meta["hierarchies"][hierarchy]
        idx = torch.tensor(meta["index"][hierarchy])
        probs = cache.teacher_probs[idx].float()
        self.P_tr, self.P_te = probs[:, tr], probs[:, te]
        self.levels = levels
        self.specs = specs
        self.domain = any("domain" in s for s in specs)
        if self.domain:
            self.domains_tr = cache.domains[tr]
            self.teacher_domain = [cache.domain_names.index(s["domain"]) if "domain" in s else -1 for s in specs]
        oos = meta.get("oos", {}).get(hierarchy)
        if oos:
            self.oos_in = oos["in_specialty"][:, tr]
            self.oos_P = oos["probs"][:, tr]
        self.masks = C.class_masks(specs, self.num)
        self.weak = C.accuracy(self.P_te[0], self.y_te)

    def owner(self, level):
        return C._class_owner(self.masks[self.levels[level]])

    def oracle_assignment(self, level):
        members = self.levels[level]
        if self.domain:
            return C.assign_by_oracle_domain(self.domains_tr, torch.tensor([self.teacher_domain[t] for t in members]))
        return C.assign_by_oracle_class(self.y_tr, self.masks[members])

    def targets_for(self, route: str, level: int, prev: torch.Tensor):
        """``(targets [N, C], assignment [N] or None)`` for a routing option at a level."""
        members = self.levels[level]
        P, masks = self.P_tr[members], self.masks[members]
        if route == "student":
            a = C.assign_by_student(prev, masks)
        elif route == "oracle":
            a = self.oracle_assignment(level)
        elif route == "agreement":
            a = C.assign_by_agreement(prev, P)
        elif route == "ensemble":
            return C.ensemble_targets(P), None
        elif route == "softgate":
            return C.soft_gate_targets(prev, P, masks), None
        elif route == "kl_gate":  # domain levels: gate ∝ exp(-KL(student || teacher))
            log_ps = prev.float().log_softmax(-1)
            kl = (log_ps.exp().unsqueeze(0) * (log_ps.unsqueeze(0) - P.clamp_min(1e-8).log())).sum(-1)
            return C.gated_targets((-kl).T.softmax(-1), P), None
        elif route in ("oos_gate", "oos", "oos_only"):
            gate = C.specialist_gate(prev, masks, self.oos_in[members], 0.0 if route == "oos_only" else 1.0)
            return C.gated_targets(gate, P if route == "oos_gate" else self.oos_P[members]), None
        elif route == "oos_gate_hard":
            a = C.specialist_gate(prev, masks, self.oos_in[members]).argmax(-1)
        elif route == "gen_gate":
            gen_mass = C.specialty_mass(self.P_tr[0].clamp_min(1e-12).log(), masks)  # [N, T]
            return C.gated_targets(C.specialist_gate(prev, masks, gen_mass.T), P), None
        else:
            raise ValueError(route)
        return hard_route_targets(a, P), a

    @torch.no_grad()
    def evaluate(self, head):
        return head(self.x_tr), C.accuracy(head(self.x_te), self.y_te)

    def ceiling_and_level0(self):
        head = train_head(self.x_tr, self.y_tr, self.num, self.epochs, self.seed, phase=-1)
        _, ceiling = self.evaluate(head)
        t0 = self.P_tr[0]
        head = train_head(self.x_tr, t0.argmax(-1), self.num, self.epochs, self.seed, phase=0)
        logits, acc0 = self.evaluate(head)
        head_s = train_head(self.x_tr, t0, self.num, self.epochs, self.seed, phase=0)
        logits_s, acc0_s = self.evaluate(head_s)
        return ceiling, {"hard": (logits, acc0), "soft": (logits_s, acc0_s)}

    def pgr(self, acc, ceiling):
        return 100.0 * (acc - self.weak) / (ceiling - self.weak) if ceiling > self.weak else None

    def run(self, route: str, soft: bool, refine: int, ceiling: float, level0, denoise: str = "top3") -> dict:
        prev, acc0 = level0["soft" if soft else "hard"]
        y = self.y_tr
        rounds = [{"level": 0, "pass": 0, "acc": acc0, "pgr": self.pgr(acc0, ceiling), "keep": 1.0,
                   "precision": float((self.P_tr[0].argmax(-1) == y).float().mean()), "assign_acc": None}]
        for level in range(1, len(self.levels)):
            for p in range(refine + 1):
                targets, a = self.targets_for(route, level, prev)
                tc = targets.argmax(-1)
                keep, rate = C.consistency_filter(prev, tc, denoise)
                epochs = C.scaled_epochs(self.epochs, rate)
                head = train_head(self.x_tr[keep], (targets if soft else tc)[keep], self.num, epochs, self.seed,
                                  phase=level + 100 * p)
                oracle = self.oracle_assignment(level)
                if a is None:  # a gate: the specialist owning the target class (class levels) is the effective route
                    a = self.owner(level)[tc] if not self.domain else None
                _, precision, _ = C.label_quality(tc, y, keep)
                prev, acc = self.evaluate(head)
                rounds.append({"level": level, "pass": p, "acc": acc, "pgr": self.pgr(acc, ceiling), "keep": rate,
                               "precision": precision, "teacher_acc": float((tc == y).float().mean()),
                               "assign_acc": None if a is None else float((a == oracle).float().mean()),
                               "epochs": epochs})
        return {"rounds": rounds}


def hard_route_targets(assignment: torch.Tensor, teacher_probs: torch.Tensor) -> torch.Tensor:
    """The assigned teacher's row per sample: ``teacher_probs [T, N, C]``, ``assignment [N]`` -> ``[N, C]``."""
    return teacher_probs[assignment, torch.arange(assignment.shape[0])].float()


def level_summary(rounds):
    """Last pass of every level."""
    last = {}
    for r in rounds:
        last[r["level"]] = r
    return [last[k] for k in sorted(last)]


def teacher_only(R: Rounds) -> dict:
    """Test accuracy of the teachers alone (no student): per level the ensemble and the oracle-routed specialists."""
    out = {}
    for level in range(1, len(R.levels)):
        members = R.levels[level]
        P = R.P_te[members]
        ens = C.accuracy(C.ensemble_targets(P), R.y_te)
        if R.domain:
            orc = None
        else:
            a = C._class_owner(R.masks[members])[R.y_te]
            orc = C.accuracy(hard_route_targets(a, P), R.y_te)
        out[str(level)] = {"ensemble_acc": ens, "oracle_routed_acc": orc}
    return out




def ms(values, scale=1.0):
    vals = [scale * v for v in values if v is not None]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.1f}"
    return f"{statistics.mean(vals):.1f} ± {statistics.stdev(vals):.1f}"


def summarize(all_results: list[dict], hierarchies=None, options=None, file=sys.stdout):
    """Mean ± std tables over seeds: per (hierarchy, option) PGR per level, assignment accuracy, keep rate,
    precision, best CSL PGR, gain over the single teacher, and fraction of oracle gain recovered."""
    keys = []
    for r in all_results:
        for k in r["runs"]:
            if k not in keys:
                keys.append(k)
    if hierarchies:
        keys = [k for k in keys if k.split("/")[0] in hierarchies]
    if options:
        keys = [k for k in keys if k.split("/")[1] in options]
    seeds = [r["seed"] for r in all_results]
    print(f"seeds {seeds}; weak {ms([r['weak'] for r in all_results], 100)} %, ceiling "
          f"{ms([r['ceiling'] for r in all_results], 100)} %\n", file=file)
    print("| hierarchy / option | PGR per level (1, 2, 4, 5 teachers) | assignment acc % (2, 4, 5) | keep % (2, 4, 5) |"
          " precision % (2, 4, 5) | best CSL PGR | last PGR | gain over single | frac. of own oracle gain | "
          "frac. of blocks-oracle gain |", file=file)
    print("|---|---|---|---|---|---|---|---|---|---|", file=file)
    for k in keys:
        h, opt = k.split("/")
        rs = [r for r in all_results if k in r["runs"]]
        lv = [level_summary(r["runs"][k]["rounds"]) for r in rs]
        n = len(lv[0])
        col = lambda i, f: ms([x[i][f] for x in lv], 100 if f in ("assign_acc", "keep", "precision") else 1)  # noqa
        best = [max(x[i]["pgr"] for i in range(1, n)) for x in lv]
        single = [x[0]["pgr"] for x in lv]
        frac_own, frac_blocks = [], []
        for r, b, s in zip(rs, best, single):
            for ref, lst in ((f"{h}/oracle", frac_own), ("blocks/oracle", frac_blocks)):
                if ref in r["runs"]:
                    ob = max(x["pgr"] for x in level_summary(r["runs"][ref]["rounds"])[1:])
                    lst.append(100 * (b - s) / (ob - s) if ob > s else None)
        print(f"| {h} / {opt} | {' → '.join(col(i, 'pgr') for i in range(n))} | "
              f"{', '.join(col(i, 'assign_acc') for i in range(1, n))} | {', '.join(col(i, 'keep') for i in range(1, n))} | "
              f"{', '.join(col(i, 'precision') for i in range(1, n))} | {ms(best)} | {ms([x[-1]['pgr'] for x in lv])} | "
              f"{ms([b - s for b, s in zip(best, single)])} | {ms(frac_own)} | {ms(frac_blocks)} |", file=file)
    hs = []
    for r in all_results:
        for h in r.get("coverage0", {}):
            if h not in hs and (not hierarchies or h in hierarchies):
                hs.append(h)
    if hs and all_results[0]["coverage0"][hs[0]]:
        print("\nrouting coverage of the level-0 student's argmax (share routed to the true class's group) and "
              "teacher-only test accuracy (ensemble of the level / oracle-routed), %:\n", file=file)
        print("| hierarchy | coverage (2, 4, 5) | ensemble acc (2, 4, 5) | oracle-routed acc (2, 4, 5) |", file=file)
        print("|---|---|---|---|", file=file)
        for h in hs:
            rs = [r for r in all_results if h in r.get("coverage0", {})]
            lv = sorted(rs[0]["coverage0"][h], key=int)
            print(f"| {h} | {', '.join(ms([r['coverage0'][h][l] for r in rs], 100) for l in lv)} | "
                  f"{', '.join(ms([r['teacher_only'][h][l]['ensemble_acc'] for r in rs], 100) for l in lv)} | "
                  f"{', '.join(ms([r['teacher_only'][h][l]['oracle_routed_acc'] for r in rs], 100) for l in lv)} |",
                  file=file)


