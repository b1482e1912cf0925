"""Lesson 07: where the picture breaks — static removal distorts the rest; posterior-aware removal does not.

"Anything but k": pos = none, ref = k, eps = eps_k + s (eps_none - eps_k). With one scale s at every step this
leans towards the tilt p(x) p(k|x)^-(s - 1): it does not just remove k, it piles mass where p(k|x) is SMALLEST,
on the classes least like k. The target is p(x | not k) = p(x) (1 - p(k|x)) / (1 - p(k)). Posterior-aware
guidance (Koulischer et al. 2025) pushes with s_t = 1 + lambda p_t/(1 - p_t), where p_t = p_t(k | x_t) is tracked
along the chain: hard while the sample still looks like k, not at all once it does not (lambda = 1 is exact for
an exact model). The exact baseline samples the other classes in their training proportions at s = 1.

TV: half the summed absolute difference of two class histograms (0 = the same, 1 = disjoint); we compare each
set with the model's own p(x | not k): its unguided classes with k dropped and renormalised. Two unguided sets with
different seeds show the TV that sampling noise alone gives at this n.

    python tutorial/07_where_it_breaks.py            # weights/digits.pt -> figures/lessons/07_removal.png
"""
import numpy as np

from toydiff import figures
from toydiff.lesson_cli import sized, start, study
from toydiff.metrics import total_variation
from toydiff.sampling import Sampler

K_REMOVED = 9
args = start(__doc__, ckpt="weights/digits.pt", out="figures/lessons")
st = study(args, Sampler(sample_steps=25))                # DDIM-25: six sets of 200 in a minute
n = sized(200, 20)

path = f"{args.out}/07_removal.png"
result = figures.removal_figure(st, path, k=K_REMOVED, seeds=range(n), scales=(3.0, 5.0))
names = st.class_names
print(f"'anything but {K_REMOVED}', {n} samples per set, the same seeds, {st.sampler.label}; classes by the judge")
print(f"{'set':<36} {'judged ' + str(K_REMOVED):>9} {'TV':>6}   most frequent classes")
for name, (freqs, tv) in result.items():
    top = ", ".join(f"{names[c]}: {freqs[c]:.0%}" for c in np.argsort(-freqs)[:3])
    print(f"{name:<36} {freqs[K_REMOVED]:>9.1%} {'-' if np.isnan(tv) else f'{tv:.2f}':>6}   {top}")



def without_k(freqs):                                # p(x | not k) estimated from an unguided histogram
    kept = np.where(np.arange(len(freqs)) == K_REMOVED, 0.0, freqs)
    return kept / kept.sum()


unguided = next(iter(result.values()))[0]
again = np.bincount(st.classify(st.sample(st.null, range(n, 2 * n))), minlength=len(names)) / n
print(f"noise floor: TV between p(x | not {K_REMOVED}) from two unguided sets of {n} (other seeds) = "
      f"{total_variation(without_k(unguided), without_k(again)):.2f}")
print(f"wrote {path}")
