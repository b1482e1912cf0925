"""Lesson 05: the negative class is a "bad" reference — it pushes away from the class you do not want.

eps = eps_ref + s (eps_pos - eps_ref). CFG takes ref = none, whose prediction at high noise is the mean of ALL
images, so its push d -> mu_c - mu points away from "anything". A negative class k replaces the unconditional
reference: ref = k, whose prediction is the mean of class k, so d -> mu_c - mu_k points away from k itself. Where
class c is confused with k, that is the push that helps.

We pick the pair the unguided model confuses most (its confusion matrix, judged by the judge), then guide THE SAME
samples of class c (the same seeds) with CFG and with the negative k at the same s, and measure how often the judge
calls a sample k, how sure it is (mean p_judge(k | x)), and the quality of the class-c samples (classifier-FID against
real c images, lower is better; diversity, 1 = as varied as real images).

    python tutorial/05_negative_reference.py         # weights/digits.pt -> figures/lessons/05_negative.png
"""
import numpy as np
import torch

from toydiff import viz_lessons
from toydiff.lesson_cli import sized, start, study
from toydiff.metrics import confusion_matrix, fid_from_features, most_confused, pair_row, real_reference
from toydiff.pipeline import class_rows
from toydiff.sampling import Sampler

args = start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
st = study(args, Sampler(sample_steps=25))                # DDIM-25: this lesson's 2000 samples in a minute
K = st.null

# 1. The unguided model's confusion matrix: row c = the class asked for, column = the class the judge sees.
n = sized(100, 10)
labels = class_rows(K, n)
seeds = list(range(len(labels)))                          # sample i of class c uses seed c * n + i
unguided = st.sample(labels, seeds)
confusion = confusion_matrix(labels.numpy(), st.classify(unguided), K)
pos, neg = most_confused(confusion)
print(f"unguided (s = 1), {n} samples per class: {len(labels) - np.trace(confusion)} of {len(labels)} judged "
      f"another class; most often {pos} -> {neg} ({confusion[pos, neg]} of {n})")

# 2. The same samples of class pos (the same seeds), guided by CFG and by the negative neg at the same s:
# the n drawn above and m - n more (seeds K n, K n + 1, ...).
m = sized(200, 20)
extra = list(range(K * n, K * n + m - n))
seeds = seeds[pos * n:(pos + 1) * n] + extra
drawn = torch.cat([unguided[labels == pos], st.sample(pos, extra)])
real = real_reference(st.judge(), dataset=st.dataset, data_dir=st.data_dir)
print(f"\nthe same {m} seeds of class {pos}; p_judge: the judge's probabilities; FID against real {pos}s")
print(f"{'set':<20} {'judged ' + str(neg):>9} {'p_judge(' + str(neg) + '|x)':>14} {'accuracy':>9} "
      f"{'FID':>6} {'diversity':>10}")
rows = {}
for name, s, negative in [("s = 1", 1.0, None), ("CFG s = 1.25", 1.25, None), ("negative s = 1.25", 1.25, neg),
                          ("CFG s = 3", 3.0, None), ("negative s = 3", 3.0, neg)]:
    x = drawn if s == 1 else st.sample(pos, seeds, scale=s, negative=negative)
    r = rows[name] = dict(pair_row(st.judge(), x, pos=pos, neg=neg, real=real), images=x)
    print(f"{name:<20} {r['rate']:>9.1%} {r['p_neg']:>7.4f}+-{r['p_neg_se']:.4f} {r['acc']:>9.1%} {r['fid']:>6.2f} "
          f"{r['div']:>10.2f}")
real_fid = fid_from_features(real.train_feats[real.train_labels == pos], real.of_class(pos))
print(f"{'real (train vs test)':<20} {'':>9} {'':>14} {'':>9} {real_fid:>6.2f}")

path = f"{args.out}/05_negative.png"
viz_lessons.plot_negative(path, confusion=confusion, pos=pos, neg=neg, rows=rows, class_names=st.class_names)
print(f"wrote {path}")
