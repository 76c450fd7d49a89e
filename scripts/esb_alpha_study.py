#!/usr/bin/env python3
"""Issue #22: ESB alpha for (4 bits, k=0) and (5 bits, k=1): published loc_alpha (0.0381 / 0.0391) vs the
unit-Gaussian global minima in quantizers/esb.cpp (0.0655 / 0.0766), MSE on trained weights.
Usage: python3 scripts/esb_alpha_study.py CHECKPOINT.pt   (an `autoqnn train` LibTorch archive)"""
import sys, torch
def esb_mags(bits, lb):
    nl = bits - lb - 1; N = (1 << nl) - 2; s0 = 2.0 ** -lb
    m = [k * s0 for k in range(2 << lb)]
    for n in range(1, N + 1):
        m += [2.0 ** n * (1 + j * s0) for j in range(1 << lb)]
    return m
def esb_q(W, bits, lb, loc, per_channel=False):
    L = torch.tensor(sorted(set([-v for v in esb_mags(bits, lb)] + esb_mags(bits, lb))), dtype=torch.float64)
    bd = (L[1:] + L[:-1]) / 2
    W = W.double()
    sd = W.flatten(1).std(1).view(-1, *[1] * (W.dim() - 1)) if per_channel else W.std()
    a = loc * sd
    return L[torch.bucketize(W / a, bd)] * a
CASES = [((4, 0), 0.0381, 0.0655253), ((5, 1), 0.0391, 0.0766382)]
if __name__ == '__main__':
    m = torch.jit.load(sys.argv[1])
    g = torch.Generator().manual_seed(0)
    extra = {'gauss': torch.randn(1 << 16, generator=g), 'uniform': torch.rand(1 << 16, generator=g) * 2 - 1,
             'laplace': torch.distributions.Laplace(0., 1.).sample((1 << 16,))}
    ws = [(n, p.detach()) for n, p in m.named_parameters() if n.endswith('weight') and p.dim() >= 2]
    print('| tensor | n | kurtosis | esb:4:k=0 pub 0.0381 | ours 0.0655 | ratio | esb:5:k=1 pub 0.0391 | ours 0.0766 | ratio |')
    print('|---|---|---|---|---|---|---|---|---|')
    tot = {c[0]: [0.0, 0.0] for c in CASES}
    for n, W in ws + list(extra.items()):
        W = W.double(); v = W.var().item(); z = (W - W.mean()) / W.std(); kurt = (z ** 4).mean().item()
        row = f'| {n} | {W.numel()} | {kurt:.1f} |'
        for (b, lb), pub, our in CASES:
            mp = ((W - esb_q(W, b, lb, pub)) ** 2).mean().item() / v
            mo = ((W - esb_q(W, b, lb, our)) ** 2).mean().item() / v
            if n not in extra: tot[(b, lb)][0] += mp * v * W.numel(); tot[(b, lb)][1] += mo * v * W.numel()
            row += f' {mp:.5f} | {mo:.5f} | {mo / mp:.2f} |'
        print(row)
    for k, (p, o) in tot.items():
        print(f'all trained weights (b, lb)={k}: total squared error published {p:.5f}, ours {o:.5f}, ratio {o / p:.3f}')
