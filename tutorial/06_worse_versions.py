"""Lesson 06: every reference is a worse version of the prediction — the average, a wrong class, a worse model.

eps = eps_ref + s (eps_pos - eps_ref) extrapolates from a worse prediction (ref) through a better one (pos). What
"worse" means decides what guidance removes:
    CFG            ref = none: the prediction that ignores the class (at high noise the mean of all images)
    negative       ref = class k = (c + 1) mod 10: a prediction for the WRONG class
    autoguidance   ref = class c through an early checkpoint (step 500 of 1300; Karras et al. 2024): the same
                   task, done worse — guidance then removes the early model's errors, not the class's neighbours
We first measure how much worse each reference predicts eps on held-out images (its squared error against the
true noise, over the positive's), then what each does at the same s to accuracy, FID and diversity.

    python tutorial/06_worse_versions.py             # weights/digits.pt + digits_step500.pt -> figures/lessons/
"""
import numpy as np
import torch

from toydiff import checkpoint, viz_lessons
from toydiff.data import load_dataset
from toydiff.guidance import batched_forward, guide
from toydiff.lesson_cli import sized, start, study
from toydiff.metrics import evaluate, real_reference
from toydiff.pipeline import class_rows, generate, next_class

EARLY = "weights/digits_step500.pt"
S = 3.0
args = start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
st = study(args)
early = checkpoint.load_reference(EARLY, st.cfg, device=st.device).model
K = st.null

# 1. How wrong is each reference? E ||eps_hat - eps||^2 on held-out images, at random t, relative to pos.
test, _ = load_dataset(st.dataset, st.data_dir, train=False)
x0, y = test.tensors
g = torch.Generator().manual_seed(0)
t = torch.randint(0, st.schedule.T, (len(x0),), generator=g)
eps = torch.randn(x0.shape, generator=g)
x_t = st.schedule.q_sample(x0, t, eps)
with torch.no_grad():
    e_pos, e_none, e_wrong = batched_forward(st.model, x_t, t, [y, torch.full_like(y, K), next_class(y, K)])
    e_early = early(x_t, t, y)
mse = {name: float(((e - eps) ** 2).mean()) for name, e in
       [("pos = class c", e_pos), ("none", e_none), ("class (c + 1) mod 10", e_wrong), ("c, early checkpoint", e_early)]}
print(f"eps error on {len(x0)} held-out images at random t: E||eps_hat - eps||^2 per pixel (ratio to pos)")
for name, v in mse.items():
    print(f"  {name:<22} {v:.4f}  ({v / mse['pos = class c']:.2f}x)")

# 2. The same labels and seeds, every reference at the same s.
labels = class_rows(K, sized(20, 3)).to(st.device)
negatives = next_class(labels, K)
sets = {"s = 1 (no guidance)": guide(st.model, labels, scale=1.0),
        f"CFG, s = {S:g}": guide(st.model, labels, scale=S),
        f"negative (c + 1), s = {S:g}": guide(st.model, labels, scale=S, negatives=[(negatives, 1.0)]),
        f"autoguidance, s = {S:g}": guide(st.model, labels, scale=S, ref_model=early)}
real = real_reference(st.judge(), dataset=st.dataset, data_dir=st.data_dir)
print(f"\n{len(labels)} samples per set ({len(labels) // K} per class), the same seeds, {st.sampler.label}")
print(f"{'set':<28} {'accuracy':>9} {'judged c+1':>11} {'FID':>7} {'FID/class':>10} {'diversity':>10}")
results, grids = {}, {}
for name, guided in sets.items():
    x = generate(guided, st.schedule, st.sampler, seeds=list(range(len(labels))))
    m = results[name] = evaluate(st.judge(), x, labels.cpu().numpy(), negatives.cpu().numpy()[:, None], real)
    grids[name] = x.reshape(K, -1, *x.shape[1:])[:, :3].reshape(-1, *x.shape[1:])       # 3 per class
    print(f"{name:<28} {m['accuracy']:>9.1%} {m['neg_rate']:>11.1%} {m['fid']:>7.2f} {m['fid_class_mean']:>10.2f} "
          f"{m['diversity']:>10.2f}")

path = f"{args.out}/06_worse_versions.png"
viz_lessons.plot_references(path, mse=mse, results=results, grids=grids, per_class=3)
print(f"wrote {path}")
