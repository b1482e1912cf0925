"""Lesson 03: guidance pushes along the mean-to-mean direction.

Guidance combines two predictions, eps = eps_ref + s (eps_pos - eps_ref), and the formula is linear, so it holds
for x0_hat too: x0_hat_guided = x0_hat(ref) + s d with the push d = x0_hat(x_t, pos) - x0_hat(x_t, ref). Lesson 02
showed that at high noise x0_hat(c) -> mu_c and x0_hat(none) -> mu, so there

    CFG (ref = none):            d -> mu_pos - mu        negative (ref = class k):   d -> mu_pos - mu_k

We draw it on the plane through mu spanned by mu_pos - mu and mu_pos - mu_k (geometry.mean_plane), where the
three means are exactly as far apart as in image space (on a global PCA plane they can coincide), and we measure
cos(d, mean-to-mean) and the share of d that lies in that plane, for the model and for the exact denoiser D*.

    python tutorial/03_mean_to_mean.py               # weights/digits.pt -> figures/lessons/03_mean_to_mean.png
"""
import numpy as np
import torch

from toydiff import geometry, viz_lessons
from toydiff.data import load_dataset
from toydiff.lesson_cli import start, study

POS, NEG = 5, 9                                       # the confusable pair of lesson 05 (5s judged 9 most often)
args = start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
st = study(args)
plane = geometry.mean_plane(st.means, POS, NEG)
test, _ = load_dataset(st.dataset, st.data_dir, train=False)
x0 = test.tensors[0][test.tensors[1] == POS]           # held-out images of class POS, (n, C, H, W)
exact = dict(schedule=st.schedule, data=st.train_x, labels=st.train_y, null=st.null)
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
refs = {"CFG, ref = none": st.null, f"negative, ref = {NEG}": NEG}

ts = [950, 900, 800, 600, 400, 100]
al = geometry.alignment(st.model, st.schedule, x0=x0, pos=POS, refs=list(refs.values()), ts=ts[::-1],
                        data=st.train_x, labels=st.train_y, null=st.null)       # cos(d, mu_pos - mu_ref), per t
print(f"{len(x0)} held-out images of class {POS}; median over them; mu_pos - mu_ref is the mean-to-mean direction")
print(f"{'':>5} | " + " | ".join(f"{name:^29}" for name in refs))
print(f"{'t':>5} | " + " | ".join(f"{'cos model, D*':>13}  {'share model, D*':>15}" for _ in refs))
panels = []
for i, t in enumerate(ts):
    x_t = st.schedule.q_sample(x0, torch.full((len(x0),), t), noise)
    model = dict(zip(("pos", *refs), geometry.x0_hats(st.model, st.schedule, x_t, t, [POS, *refs.values()])))
    ideal = {name: geometry.exact_x0(x_t, t, k, **exact) for name, k in (("pos", POS), *refs.items())}
    cells = []
    for name in refs:
        j = len(ts) - 1 - i                                            # `al` holds t increasing
        cos = [np.nanmedian(al.cos[src, list(refs).index(name), j]) for src in (0, 1)]
        share = [np.median(geometry.in_plane_share(p["pos"] - p[name], plane)) for p in (model, ideal)]
        cells.append(f"{cos[0]:>6.2f} {cos[1]:>6.2f}  {share[0]:>7.2f} {share[1]:>7.2f}")
    print(f"{t:>5} | " + " | ".join(cells))
    panels.append((t, {src: {name: plane.project(p[name]) for name in p} for src, p in (("model", model),
                                                                                        ("D*", ideal))}))

path = f"{args.out}/03_mean_to_mean.png"
viz_lessons.plot_mean_plane(path, panels=panels, refs=list(refs), means2d=plane.project(st.means), pos=POS, neg=NEG,
                            class_names=st.class_names, data2d=plane.project(st.train_x), labels=st.train_y.numpy())
print(f"wrote {path}")
