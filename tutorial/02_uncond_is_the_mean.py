"""Lesson 02: at high noise the unconditional prediction is the data mean, the conditional one the class mean.

Noise an image x_0 to level t:  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps,  eps ~ N(0, I), where abar_t is the
share of signal left (1 at t = 0, 2e-9 at t = T-1 = 999). The model predicts eps; its guess of the clean image is
x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t). Trained with the squared error, x0_hat(x_t, c) estimates
the posterior mean E[x_0 | x_t, c], and with the null label (c = none, learned by label dropout) E[x_0 | x_t].
When abar_t -> 0, x_t says nothing about x_0 and a posterior mean falls back to its prior mean:

    x0_hat(x_t, c) -> mu_c  (the mean image of class c),      x0_hat(x_t, none) -> mu  (the mean of all images).

We measure it on held-out images, for the trained model and for D*, the exact posterior mean of the training set
(geometry.exact_x0), as r = ||x0_hat - mean|| / ||x_0 - mean||: 0 = the prediction is the mean, 1 = it is as far
from the mean as the image itself.

    python tutorial/02_uncond_is_the_mean.py          # weights/digits.pt -> figures/lessons/02_mean.png
"""
import numpy as np
import torch

from toydiff import geometry, viz_lessons
from toydiff.data import load_dataset
from toydiff.lesson_cli import start, study

args = start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
st = study(args)
test, _ = load_dataset(st.dataset, st.data_dir, train=False)
x0, y = test.tensors                                     # held-out images (N, C, H, W) and their classes (N,)
mu, mu_c = st.means[st.null], st.means[y]                # (D,) and (N, D): the mean each prediction should reach
exact = dict(schedule=st.schedule, data=st.train_x, labels=st.train_y, null=st.null)
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))

# t = 999 is left out: at abar = 2e-9, x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar) multiplies the
# net's error in eps_hat by 1 / sqrt(abar) = 2e4 (the samplers clip x0_hat to [-1, 1] there).
ts = [975, 950, 900, 800, 600, 400, 200, 50]
print(f"{len(x0)} held-out images; median r over them (0 = at the mean, 1 = as far as the image)")
print(f"{'t':>5} {'abar_t':>8} | {'r(none) vs mu':>13} {'D*':>6} | {'r(c) vs mu_c':>13} {'D*':>6}")
r, strip = [], []
for t in ts:
    x_t = st.schedule.q_sample(x0, torch.full((len(x0),), t), noise)
    model_none, model_c = geometry.x0_hats(st.model, st.schedule, x_t, t, [st.null, y])
    exact_none = geometry.exact_x0(x_t, t, st.null, **exact)
    exact_c = geometry.exact_x0_per_label(x_t, t, y, **exact)
    row = [np.median(geometry.relative_distance(pred, centre, x0))
           for pred, centre in ((model_none, mu), (exact_none, mu), (model_c, mu_c), (exact_c, mu_c))]
    r.append(row)
    strip.append((x_t, model_none, model_c))
    abar = float(st.schedule.alpha_bar[t])
    print(f"{t:>5} {abar:>8.1e} | {row[0]:>13.2f} {row[1]:>6.2f} | {row[2]:>13.2f} {row[3]:>6.2f}")

# The picture: one held-out image per class, x_t and the two predictions at each t, beside mu and mu_c.
show = torch.stack([torch.nonzero(y == c)[0, 0] for c in range(st.null)])[:5]
path = f"{args.out}/02_mean.png"
viz_lessons.plot_mean_images(path, ts=ts, x0=x0[show], strip=[[s[show] for s in step] for step in strip],
                             mu=mu, mu_c=mu_c[show], r=np.array(r), class_names=[st.class_names[c] for c in y[show]])
print(f"wrote {path}")
