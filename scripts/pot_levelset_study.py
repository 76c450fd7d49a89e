#!/usr/bin/env python3
"""Issue #22: PoT level set / scale study (Debian python3-torch). Prints MSE of the reference PoT and of
candidate level sets on fixed tensors (65536 elements, seed 0). Usage: python3 scripts/pot_levelset_study.py"""
import math, torch
torch.manual_seed(0)
N = 1 << 16
def tensors():
    g = torch.Generator().manual_seed(0)
    n = torch.randn(N, generator=g)
    lap = torch.distributions.Laplace(0., 1.).sample((N,))
    uni = torch.rand(N, generator=g) * 2 - 1
    out = torch.randn(N, generator=g); idx = torch.randperm(N, generator=g)[: N // 100]; out[idx] *= 8
    pr = torch.randn(N, generator=g); pr[torch.randperm(N, generator=g)[: int(0.3 * N)]] = 0
    return dict(normal=n, laplace=lap, uniform=uni, outliers=out, pruned30=pr)

def ref_pot(W, b):
    lam = [1, .9, .4, .03][b - 1]; a = lam * W.std() + 1e-7
    e = torch.clamp(torch.round(torch.log2((W / a).abs())), 0, 2 ** (b - 1) - 1)
    m = torch.where(e == 0, torch.full_like(e, 0.5), 2 ** e)
    return torch.sign(W) * m * a

def nearest(W, levels, geometric=False):
    lv = torch.tensor(sorted(levels), dtype=W.dtype)
    if geometric:  # log-domain boundaries between same-sign neighbours, 0 between signs
        b = []
        for i in range(len(lv) - 1):
            l0, l1 = lv[i].item(), lv[i + 1].item()
            b.append(math.copysign(math.sqrt(l0 * l1), l0) if l0 * l1 > 0 else 0.0)
        bd = torch.tensor(b)
    else:
        bd = (lv[1:] + lv[:-1]) / 2
    return lv[torch.bucketize(W, bd)]

def fit_alpha(W, levels, geometric=False, grid=None):
    """alpha minimising ||W - alpha q(W/alpha)||^2: log grid over alpha/std then Lloyd refinement."""
    s = W.std().item(); best = (float('inf'), None)
    for r in torch.logspace(-2.5, 1, 240).tolist():
        a = r * s; q = nearest(W / a, levels, geometric) * a
        m = ((W - q) ** 2).mean().item()
        if m < best[0]: best = (m, a)
    a = best[1]
    if not geometric:
        for _ in range(30):  # Lloyd on the scale: a = <W,c>/<c,c>
            c = nearest(W / a, levels); den = (c * c).sum()
            if den == 0: break
            a2 = ((W * c).sum() / den).item()
            if abs(a2 - a) < 1e-9 * a: break
            a = a2
    q = nearest(W / a, levels, geometric) * a
    return a, ((W - q) ** 2).mean().item()

def sets(b):
    E = 2 ** (b - 1)
    mags = [2.0 ** e for e in range(E)]
    return {
        'A ±{1..2^(E-1)} (ours)': [-m for m in mags] + mags,
        'R ±{.5,2..} (ref set)': [-m for m in ([0.5] + mags[1:])] + [0.5] + mags[1:],
        'Z {0,±1..2^(E-2)} (PoT paper)': [0.0] + [-m for m in mags[:-1]] + mags[:-1],
        'Z+ {0,±1..,+2^(E-1)} (asym)': [0.0] + [-m for m in mags[:-1]] + mags,
    }

if __name__ == "__main__" and len(__import__("sys").argv) == 1:
    T = tensors()
    for b in (2, 3, 4):
        print(f'== pot:{b}  (MSE / var, ratio to reference)')
        for name, W in T.items():
            v = W.var().item()
            ref = ((W - ref_pot(W, b)) ** 2).mean().item()
            lam_old = [1, .9, .4, .03][b - 1]
            a = lam_old * W.std().item() + 1e-7
            A = sets(b)['A ±{1..2^(E-1)} (ours)']
            cur = ((W - nearest(W / a, A, True) * a) ** 2).mean().item()
            row = [f'{name:9s} ref {ref / v:.4f} cur {cur / v:.4f} ({cur / ref:.2f}x)']
            for sn, L in sets(b).items():
                _, m = fit_alpha(W, L)
                row.append(f'{sn.split()[0]}:{m / v:.4f}({m / ref:.2f}x)')
            _, mg = fit_alpha(W, A, geometric=True)
            row.append(f'Alog:{mg / v:.4f}({mg / ref:.2f}x)')
            print('  '.join(row))

# ---- the rule implemented in quantizers/pot.cpp: sets R and Z, a = lambda * std then 16 Lloyd steps,
# the set with the lower squared error wins (ties -> R). `python3 scripts/pot_levelset_study.py cpp`
LAM_R = [1.5961, 0.7534, 0.2762, 0.0325]
LAM_Z = [0.0, 1.2231, 0.5190, 0.0656]
def mags(b, zero):
    E = 2 ** (b - 1)
    return [0.0] + [2.0 ** e for e in range(E - 1)] if zero else [0.5] + [2.0 ** e for e in range(1, E)]
def lloyd(W, m, lam, iters=16):
    L = sorted(set([-v for v in m] + m)); a = lam * W.std().item()
    for _ in range(iters):
        c = nearest(W / a, L); den = (c * c).sum().item()
        if den == 0: break
        a2 = ((W * c).sum() / den).item()
        if a2 <= 0 or abs(a2 - a) <= 1e-9 * a: a = a2 if a2 > 0 else a; break
        a = a2
    q = nearest(W / a, L) * a
    return ((W - q) ** 2).mean().item(), a
def ours_pot(W, b):
    mr, _ = lloyd(W, mags(b, False), LAM_R[b - 1])
    if b == 1: return mr, 'R'
    mz, _ = lloyd(W, mags(b, True), LAM_Z[b - 1])
    return (mz, 'Z') if mz < mr else (mr, 'R')

if __name__ == '__main__' and len(__import__('sys').argv) > 1 and __import__('sys').argv[1] == 'cpp':
    T = tensors()
    print('| tensor | bits | reference MSE/var | old ours | new ours (set) | new / reference |')
    print('|---|---|---|---|---|---|')
    for b in (2, 3, 4):
        for name, W in T.items():
            v = W.var().item(); ref = ((W - ref_pot(W, b)) ** 2).mean().item()
            a = [1, .9, .4, .03][b - 1] * W.std().item() + 1e-7
            A = [-(2.0 ** e) for e in range(2 ** (b - 1))] + [2.0 ** e for e in range(2 ** (b - 1))]
            old = ((W - nearest(W / a, A, True) * a) ** 2).mean().item()
            m, s = ours_pot(W, b)
            print(f'| {name} | {b} | {ref / v:.4f} | {old / v:.4f} ({old / ref:.2f}x) | {m / v:.4f} ({s}) | {m / ref:.3f} |')
