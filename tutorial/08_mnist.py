"""Lesson 08: the same on MNIST — the mean at high noise, the push from mean to mean, a negative CFG cannot replace.

Lessons 02, 03 and 05 again, on 28 x 28 MNIST (weights/mnist.pt: the 3500-step MNIST preset, CPU-trained):
  1. the pair: the class the unguided model confuses most, from its confusion matrix (as in lesson 05);
  2. at high noise x0_hat(none) -> mu and x0_hat(pos) -> mu_pos (r: 0 = at the mean, 1 = as far as the image;
     lesson 02), and the push d = x0_hat(pos) - x0_hat(ref) lies along mu_pos - mu_ref (cos; lesson 03), for the
     model and for D*, the exact denoiser of the empirical distribution of 10000 training images (a fixed subset);
  3. the same seeds of pos, guided by CFG (ref = none) and by the negative (ref = neg) at the same s.
Convention: eps = eps_ref + s (eps_pos - eps_ref); s = 1 is no guidance (Ho & Salimans' w = s - 1).
MNIST does not ship with toydiff: --data-dir names a folder holding MNIST/raw, --download fetches it there.

    python tutorial/08_mnist.py --data-dir data --download    # weights/mnist.pt -> figures/lessons/08_*.png
"""
import warnings

import numpy as np
import torch

from toydiff import geometry, viz_lessons
from toydiff.data import load_dataset
from toydiff.lesson_cli import sized, start, study
from toydiff.metrics import confusion_matrix, fid_from_features, most_confused, pair_row, real_reference
from toydiff.pipeline import class_rows
from toydiff.sampling import Sampler

S = 2.0
warnings.filterwarnings("ignore", "All-NaN slice")     # cos is NaN where the push d vanishes: printed as nan
args = start(__doc__, ckpt="weights/mnist.pt", out="figures/lessons", data=True)
st = study(args, Sampler(sample_steps=25))                 # DDIM-25: ~600 samples of 28 x 28 in a minute
K = st.null

# 1. The pair the unguided model confuses most.
n = sized(30, 3)
labels = class_rows(K, n)
unguided = st.sample(labels, range(len(labels)))            # sample i of class c uses seed c * n + i
confusion = confusion_matrix(labels.numpy(), st.classify(unguided), K)
pos, neg = most_confused(confusion)
print(f"unguided (s = 1), {n} samples per class, {st.sampler.label}: {len(labels) - np.trace(confusion)} of "
      f"{len(labels)} judged another class; most often {pos} -> {neg} ({confusion[pos, neg]} of {n})")

# 2. At high noise, on held-out images of pos: the predictions reach the means, the push runs mean to mean.
test, _ = load_dataset(st.dataset, st.data_dir, train=False)
x0 = test.tensors[0][test.tensors[1] == pos][:sized(64, 4)]
mu, mu_pos, mu_neg = st.means[st.null], st.means[pos], st.means[neg]
data, data_labels = geometry.subset(geometry.flat(st.train_x).double(), st.train_y, 10000)
exact = dict(schedule=st.schedule, data=data, labels=data_labels, null=st.null)
noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
plane = geometry.mean_plane(st.means, pos, neg)
refs = {"CFG, ref = none": st.null, f"negative, ref = {neg}": neg}
print(f"\n{len(x0)} held-out {pos}s; medians; model | D*")
print(f"{'t':>5} | {'r(none) vs mu':>14} | {'r(' + str(pos) + ') vs mu_' + str(pos):>14} | "
      f"{'cos(d, mu_' + str(pos) + ' - mu)':>19} | {'cos(d, mu_' + str(pos) + ' - mu_' + str(neg) + ')':>19}")
panels = []
for t in [975, 900, 750, 500]:
    x_t = st.schedule.q_sample(x0, torch.full((len(x0),), t), noise)
    model = dict(zip(("pos", *refs), geometry.x0_hats(st.model, st.schedule, x_t, t, [pos, *refs.values()])))
    ideal = {name: geometry.exact_x0(x_t, t, k, **exact) for name, k in (("pos", pos), *refs.items())}
    cells = []
    for name, centre in (("CFG, ref = none", mu), ("pos", mu_pos)):
        cells.append(" ".join(f"{np.median(geometry.relative_distance(p[name], centre, x0)):>6.2f}"
                              for p in (model, ideal)))
    for name, m in zip(refs, (mu_pos - mu, mu_pos - mu_neg)):
        cells.append(" ".join(f"{np.nanmedian(geometry.cos_and_ratio(p['pos'] - p[name], m)[0]):>9.2f}"
                              for p in (model, ideal)))
    print(f"{t:>5} | {cells[0]:>14} | {cells[1]:>14} | {cells[2]:>19} | {cells[3]:>19}")
    panels.append((t, {src: {name: plane.project(p[name]) for name in p} for src, p in (("model", model),
                                                                                        ("D*", ideal))}))
path = f"{args.out}/08_mean_plane.png"
viz_lessons.plot_mean_plane(path, panels=panels, refs=list(refs), means2d=plane.project(st.means), pos=pos,
                            neg=neg, class_names=st.class_names, data2d=plane.project(st.train_x[:5000]),
                            labels=st.train_y[:5000].numpy())
print(f"wrote {path}")

# 3. The same m seeds of pos (the n drawn above and m - n more), CFG against the negative at the same s.
m = sized(60, 6)
extra = list(range(K * n, K * n + m - n))
seeds = [pos * n + i for i in range(n)] + extra
real = real_reference(st.judge(), dataset=st.dataset, data_dir=st.data_dir)
print(f"\nthe same {m} seeds of class {pos}; p_judge: the judge's probabilities; FID against real {pos}s")
print(f"{'set':<18} {'judged ' + str(neg):>9} {'p_judge(' + str(neg) + '|x)':>14} {'accuracy':>9} {'FID':>6} "
      f"{'diversity':>10}")
rows = {}
for name, s, negative in [("s = 1", 1.0, None), (f"CFG s = {S:g}", S, None), (f"negative s = {S:g}", S, neg)]:
    x = (torch.cat([unguided[labels == pos], st.sample(pos, extra)]) if s == 1 else
         st.sample(pos, seeds, scale=s, negative=negative))
    r = rows[name] = dict(pair_row(st.judge(), x, pos=pos, neg=neg, real=real), images=x)
    print(f"{name:<18} {r['rate']:>9.1%} {r['p_neg']:>7.4f}+-{r['p_neg_se']:.4f} {r['acc']:>9.1%} {r['fid']:>6.2f} "
          f"{r['div']:>10.2f}")
real_fid = fid_from_features(real.train_feats[real.train_labels == pos], real.of_class(pos))
print(f"{'real (train vs test)':<18} {'':>9} {'':>14} {'':>9} {real_fid:>6.2f}")

path = f"{args.out}/08_negative.png"
viz_lessons.plot_negative(path, confusion=confusion, pos=pos, neg=neg, rows=rows, class_names=st.class_names)
print(f"wrote {path}")
