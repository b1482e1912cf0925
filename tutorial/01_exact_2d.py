"""Lesson 01: the exact 2D playground. CFG, negative guidance and removal, each beside its exact answer.

    python tutorial/01_exact_2d.py                     # weights/toy2d.pt -> figures/toy2d/ (under a minute)

Data: four classes in R^2 from a known Gaussian mixture (toydiff/toy2d.py), so the optimal denoiser of every
class and of the null label is exact at every noise level. The exact model and the learned MLP run through the
same guide(...) and the same sampler. Convention: eps = eps_ref + s (eps_pos - eps_ref); s = 1 is no guidance
(Ho & Salimans' w = s - 1). The text: docs/lesson01_exact_2d.md.
"""
from toydiff import playground
from toydiff.lesson_cli import sized, start
from toydiff.metrics import total_variation
from toydiff.schedule import NoiseSchedule
from toydiff.toy2d import ExactDenoiser, toy2d

args = start(__doc__, ckpt="weights/toy2d.pt", out="figures/toy2d", device="cpu")   # the exact model is on the CPU
N, n = sized(playground.N, 400), sized(600, 200)   # samples per measured set and per figure panel (CI: fewer)

# 1. The mixture, the exact model (closed-form E[x0 | x_t, y]) and the learned MLP, on one noise schedule.
mix = toy2d()
learned = args.run                             # the checkpoint start() read
schedule = NoiseSchedule.from_config(learned.cfg.diffusion)
models = {"exact": ExactDenoiser(mix, schedule), "learned": learned.model}
A, B = 0, 1                                    # the confusable pair: c = A, negative k = B
S = 3.0
print(f"classes {mix.class_names}, priors {[round(p, 2) for p in mix.prior.tolist()]}; "
      f"components {mix.component_names}, weights {mix.weights.tolist()}")
print(f"learned: {args.ckpt}, step {learned.step}; T = {schedule.T}; sampler {playground.SAMPLER.label}")

# 2. The field at three noise levels: at high noise x0_hat(null) -> mu and x0_hat(c) -> mu_c.
for row in playground.field_figure(f"{args.out}/field.png", models, schedule, mix, pos=A, neg=B, scale=S):
    print(f"field t = {row['t']:4d} (abar {row['abar']:.3f}): mean |x0_hat(null) - mu| = {row['null_to_mu']:.3f}, "
          f"|x0_hat(A) - mu_A| = {row['pos_to_mu_pos']:.3f}; learned vs exact x0_hat(A): "
          f"{row['learned_vs_exact']:.3f}")

# 3. Every guidance mode at N samples, against its exact target: component masses and energy distance (ED).
rows = playground.measure(models, schedule, mix, pos=A, neg=B, scale=S, n=N)
print(f"\nN = {N} per set; ED to an exact target sample of N; floor = ED of two exact samples of N")
print(f"{'set':28s} {'target':24s} {'ED exact':>9s} {'ED learned':>10s} {'floor':>7s} "
      f"{'TV exact':>8s} {'TV learned':>10s}")
for r in rows:
    tv = {m: total_variation(r[f"{m}_mass"], r["target_mass"]) for m in models}
    print(f"{r['mode']:28s} {r['target']:24s} {r['exact_distance']:9.4f} {r['learned_distance']:10.4f} "
          f"{r['floor']:7.4f} {tv['exact']:8.3f} {tv['learned']:10.3f}")
print("component masses (s = 1, all classes): exact pi", [round(v, 3) for v in mix.weights.tolist()],
      "| learned", [round(v, 3) for v in rows[0]["learned_mass"].tolist()])

# 4. Guided samples against the exact tilted target p(x | A)^s p(x | ref)^(1 - s), s = 1, 2, 3, 5.
print(f"\nguided vs tilted target (n = {n}): ED exact / learned / floor")
for r in playground.guided_figure(f"{args.out}/guided.png", models, schedule, mix, pos=A, neg=B, n=n):
    print(f"  {r['mode']:12s} s = {r['scale']:g}: {r['exact']:.4f} / {r['learned']:.4f} / {r['floor']:.4f}")

# 5. Trajectories (same seeds), removal of B, and the animation.
playground.trajectories_figure(f"{args.out}/trajectories.png", models, schedule, mix, pos=A, neg=B, scale=S)
masses = playground.removal_figure(f"{args.out}/removal.png", rows, mix, neg=B)
print("\nremoval of B, class masses (A, B, far, arc), exact model:")
for name, m in masses.items():
    print(f"  {name:22s} {[round(v, 3) for v in m]}")
playground.animation(f"{args.out}/particles.gif", models["exact"], schedule, mix, scale=S)
print(f"\nwrote field.png, guided.png, trajectories.png, removal.png, particles.gif to {args.out}")
