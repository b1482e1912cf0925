"""Lesson 04: why a scale s > 1 — mean-to-mean is not point-to-point, and CFG sharpens an implicit classifier.

At high noise CFG's push is d -> mu_c - mu (lesson 03): the distance between two MEANS. But a sample is one image,
and images of one class lie much farther from each other, and from the nearest image of another class, than the
means do from each other. A push one mean-to-mean distance long (s = 1 adds nothing beyond the conditional model)
changes little; s scales it. What it does to the distribution: CFG's score is
grad log p(x|c) + (s - 1) grad log p(c|x), so (at each noise level) it leans towards p(x|c) p(c|x)^(s - 1) — the
class-conditional density times a SHARPENED implicit classifier p(c|x) = p(x|c) p(c) / p(x). (It is not exactly
that density: lesson 01 compares the two in 2D.) We measure both halves on the digits model: the distances, and
what s does to the judge's accuracy and confidence p_judge(c|x), and to diversity.

    python tutorial/04_why_a_scale.py                # weights/digits.pt -> figures/lessons/04_scale.png
"""
import numpy as np
import torch

from toydiff import geometry, viz_lessons
from toydiff.lesson_cli import sized, start, study
from toydiff.metrics import mean_pairwise_distance, real_reference
from toydiff.judge import features

POS, NEG = 5, 9                                      # the pair of lessons 03 and 05
SCALES = [0.0, 1.0, 2.0, 3.0, 5.0, 8.0]
args = start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
st = study(args)

# 1. Distances in image space (pixels in [-1, 1]).
mine, theirs = st.train_x[st.train_y == POS], st.train_x[st.train_y == NEG]
within = geometry.pairwise_distances(mine)                                       # ||x_i - x_j||, both POS
nearest = torch.cdist(geometry.flat(mine), geometry.flat(theirs)).min(1).values.numpy()   # each POS to its nearest NEG
to_mean = {"||mu_5 - mu||": float((st.means[POS] - st.means[st.null]).norm()),
           "||mu_5 - mu_9||": float((st.means[POS] - st.means[NEG]).norm())}
print("distances between images of the training set:")
for name, v in to_mean.items():
    print(f"  {name:<38} {v:5.2f}   (a mean-to-mean distance)")
print(f"  {'median ||x_i - x_j||, two 5s':<38} {np.median(within):5.2f}")
print(f"  {'median distance from a 5 to its nearest 9':<38} {np.median(nearest):5.2f}")

# 2. The same seeds at every s: CFG (ref = none) for class POS.
seeds = list(range(sized(100, 10)))
real = real_reference(st.judge(), dataset=st.dataset, data_dir=st.data_dir)
real_div = real.diversity(POS)
print(f"\nCFG for class {POS}, {len(seeds)} samples per s, the same seeds ({st.sampler.label}); judged by the judge")
print(f"{'s':>4} {'accuracy':>9} {'p_judge(5|x)':>13} {'judged 9':>9} {'diversity':>10} {'moved':>6}")
images = {s: st.sample(POS, seeds, scale=s) for s in SCALES}
rows = []
for s, x in images.items():
    with torch.no_grad():
        p = torch.softmax(st.judge()(x.to(st.device)), 1).cpu()                   # (n, K) judge probabilities
    pred = p.argmax(1)
    div = mean_pairwise_distance(features(st.judge(), x).numpy()) / real_div      # 1 = as diverse as real 5s
    moved = (geometry.flat(x) - geometry.flat(images[1.0])).norm(dim=1).median()  # from the same seed at s = 1
    rows.append([s, float((pred == POS).float().mean()), float(p[:, POS].mean()), float((pred == NEG).float().mean()),
                 div, float(moved)])
    print(f"{s:>4g} {rows[-1][1]:>9.1%} {rows[-1][2]:>13.3f} {rows[-1][3]:>9.1%} {div:>10.2f} {moved:>6.2f}")
print("diversity: mean pairwise distance of judge features / that of real 5s; moved: median ||x(s) - x(1)||, "
      "the same seed, in pixels")

path = f"{args.out}/04_scale.png"
viz_lessons.plot_scale(path, within=within, nearest=nearest, to_mean=to_mean, rows=np.array(rows),
                       grids={s: images[s][:8] for s in SCALES}, pos=POS, neg=NEG)
print(f"wrote {path}")
