"""Checkpoint + fixed seeds -> the tutorial figures and animations (compute with `geometry`, draw with `viz`).

    python sample.py --ckpt weights/digits.pt --figures all   # the shipped weights -> figures/*.png, *.gif
    python sample.py --figures alignment --class 3 --negative 9

Every figure uses the same positive / negative pair (default: `Study.default_pair`, printed) and guidance scale s
(eps = eps_ref + s (eps_pos - eps_ref); Ho & Salimans' w = s - 1).
Sample i of every cloud uses seed + i, so the clouds for s = 1, CFG and negative guidance share their noise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from . import geometry
from . import checkpoint
from .checkpoint import Run
from .config import Config
from .data import class_prior, load_dataset
from .guidance import Guided, batched_forward, guide
from .metrics import target_histogram, total_variation
from .pipeline import class_rows, generate, next_class, trajectory
from .sampling import Sampler, randn, seeded_generators
from .schedule import NoiseSchedule

FIGURES = ("hero", "means", "trajectories", "alignment", "removal", "posterior", "grids", "denoising", "plane")
ANIMATIONS = ("denoising", "plane")     # written as .gif, the rest as .png
FIXED_PAIRS = {"digits": (0, 6)}        # chosen by eye (a 0 and a 6 share a loop, yet their means lie apart on the
                                        # plane) before the rule of `geometry.default_pair`; kept so figures/ rebuilds
ANIMATED_CLOUD = 100                    # samples per cloud in plane.gif
ANIMATED_PER_CLASS = 3                  # samples per class row in denoising.gif
BACKDROP_POINTS = 5000                  # training points drawn behind the plane figures (a fixed random subset)
REMOVAL_SCALES = (2.0, 3.0, 5.0)
DYNAMIC_LAMBDA, DYNAMIC_CEILING = 1.0, 20.0   # posterior-aware removal in the figures: exact lambda, ceiling of s_t
POSTERIOR_CHAINS = 100                  # chains per method in posterior.png
EXACT_MAX_POINTS = 5000                  # D* sums over at most this many training points (a fixed subset)
HERO_SCALES = (0.0, 1.0, 2.0, 3.0, 5.0, 8.0)
HERO_PER_CLASS = 2                      # seeds per class row in hero.png
MIN_ALPHA_BAR = 1e-3                    # the animations start at the first step with abar_t >= this: below it
                                        # x0_hat = (x_t - sqrt(1 - abar) eps_hat) / sqrt(abar) magnifies the net's
                                        # eps error by 1 / sqrt(abar) > 30 (digits, cosine: t >= 979 of 999)


@dataclass
class Study:
    """What every figure shares, loaded once: model, schedule, data, PCA plane, sampler, judge."""
    model: torch.nn.Module
    cfg: Config                          # the checkpoint's
    schedule: NoiseSchedule
    sampler: Sampler                     # resolved for the model's T
    run_dir: str                         # where the judge is cached
    judge_name: str                      # its file name there (`checkpoint.judge_name`)
    dataset: str
    data_dir: str | None
    class_names: tuple[str, ...]
    train_x: torch.Tensor                # (N, C, H, W) in [-1, 1]
    train_y: torch.Tensor                # (N,)
    plane: geometry.Plane
    means: torch.Tensor                  # (K + 1, D): mu_c, last row mu
    device: torch.device = torch.device("cpu")
    _judge: object = field(default=None, repr=False)

    @classmethod
    def of(cls, run: Run, run_dir: str, sampler: Sampler, *, train=None, data_dir: str | None = None) -> "Study":
        """The study of a loaded run: reads its training split (unless given, as `load_dataset`'s (set, info)) from
        `data_dir` (default: the run's) and fits the PCA plane."""
        cfg = run.cfg
        data_dir = data_dir or cfg.train.data_dir
        train, info = train or load_dataset(cfg.train.dataset, data_dir, train=True)
        x, y = train.tensors
        return cls(model=run.model, cfg=cfg, schedule=NoiseSchedule.from_config(cfg.diffusion),
                   sampler=sampler.resolve(cfg.diffusion.timesteps), run_dir=run_dir,
                   judge_name=checkpoint.judge_name(run.path, cfg.train.dataset), dataset=cfg.train.dataset,
                   data_dir=data_dir, class_names=info.class_names, train_x=x, train_y=y,
                   plane=geometry.fit_plane(x), means=geometry.class_means(x, y, info.num_classes),
                   device=next(run.model.parameters()).device)

    @property
    def null(self) -> int:
        return len(self.class_names)

    def judge(self):
        """The independent classifier (`judge.judge_for`, cached as <run>/judge.pt)."""
        if self._judge is None:
            from .judge import judge_for
            self._judge = judge_for(self.run_dir, dataset=self.dataset, data_dir=self.data_dir,
                                    name=self.judge_name,
                                    device=self.device)
        return self._judge

    def classify(self, images: torch.Tensor) -> np.ndarray:
        from .judge import predict
        return predict(self.judge(), images).cpu().numpy()

    def sample(self, labels: int | torch.Tensor, seeds: Sequence[int], *, scale: float = 1.0,
               negative: int | torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, C, H, W) in [-1, 1] of `labels` (an int or (N,); null allowed), guided away from
        `negative` (an int or (N,); None: ref = null, i.e. CFG)."""
        labels = torch.as_tensor(labels).long().expand(len(seeds))
        g = guide(self.model, labels, scale=scale, negatives=[(negative, 1.0)] if negative is not None else ())
        return generate(g, self.schedule, self.sampler, seeds=list(seeds))

    def default_pair(self) -> tuple[tuple[int, int], str]:
        """(pos, neg) when none is asked for, and why: FIXED_PAIRS for digits, else `geometry.default_pair`."""
        if self.dataset in FIXED_PAIRS:
            return FIXED_PAIRS[self.dataset], f"the {self.dataset} default"
        return (geometry.default_pair(self.plane.project(self.means)),
                "pos: the class mean farthest from the global mean on the PCA plane; neg: the one farthest from pos")

    def backdrop(self) -> dict:
        """The PCA-plane keyword arguments every plane figure shares (at most BACKDROP_POINTS training points)."""
        x, y = geometry.subset(self.train_x, self.train_y, BACKDROP_POINTS)
        return dict(data2d=self.plane.project(x), labels=y.numpy(),
                    means2d=self.plane.project(self.means), explained=self.plane.explained,
                    class_names=self.class_names)


def means_figure(st: Study, path: str, *, pos: int, neg: int, scale: float, seeds: Sequence[int]) -> dict:
    """figures/means.png; returns {cloud name: (fraction judged pos, fraction judged neg = negative-class rate)}."""
    from . import viz

    sets = [(f"s = 1 (class {st.class_names[pos]}, unguided)", dict()),
            (f"CFG s = {scale:g} (ref = null)", dict(scale=scale)),
            (f"negative s = {scale:g} (ref = class {st.class_names[neg]})", dict(scale=scale, negative=neg))]
    clouds = []
    for name, kw in sets:
        images = st.sample(pos, seeds, **kw)
        judged = st.classify(images)
        clouds.append((name, st.plane.project(images), float((judged == pos).mean()), float((judged == neg).mean())))
    viz.plot_means(path, **st.backdrop(), pos=pos, neg=neg, scale=scale, clouds=clouds)
    return {name: (acc, rate) for name, _, acc, rate in clouds}


@torch.no_grad()
def trajectories_figure(st: Study, path: str, *, pos: int, neg: int, scale: float, seeds: Sequence[int]) -> None:
    """figures/trajectories.png: x0_hat at every step (`pipeline.trajectory`) on the PCA plane."""
    from . import viz

    paths = []
    for name, kw in (("s = 1", dict(scale=1.0)),
                     (f"CFG, s = {scale:g} (ref = null)", dict(scale=scale)),
                     (f"negative, s = {scale:g} (ref = class {st.class_names[neg]})",
                      dict(scale=scale, negatives=[(neg, 1.0)]))):
        g = guide(st.model, torch.full((len(seeds),), pos), **kw)
        steps = trajectory(g, st.schedule, st.sampler, seeds=list(seeds))
        paths.append((name, np.stack([st.plane.project(s.x0) for s in steps])))      # (steps, seeds, 2)
    viz.plot_trajectories(path, **st.backdrop(), pos=pos, neg=neg, scale=scale, paths=paths)


def alignment_figure(st: Study, path: str, *, pos: int, neg: int, scale: float, seed: int,
                     n_t: int = 100,               # noise levels measured, evenly spaced over 0..T-1
                     n_x0: int = 64,               # clean images per level (held-out split, class pos)
                     ) -> geometry.Alignment:
    """figures/alignment.png; returns the measured `Alignment` (refs = [null, neg])."""
    from . import viz

    test, _ = load_dataset(st.dataset, st.data_dir, train=False)
    tx, ty = test.tensors
    x0 = tx[ty == pos][:n_x0]
    data, labels = geometry.subset(st.train_x, st.train_y, EXACT_MAX_POINTS, seed=seed)
    ts = np.unique(np.linspace(0, st.schedule.T - 1, n_t).round().astype(int)).tolist()
    al = geometry.alignment(st.model, st.schedule, x0=x0, pos=pos, refs=[st.null, neg], ts=ts, data=data,
                            labels=labels, null=st.null, seed=seed)
    exact_note = (f"all {len(data)} training images" if len(data) == len(st.train_x)
                  else f"a fixed random subset of {len(data)} of the {len(st.train_x)} training images")
    viz.plot_alignment(path, al, pairwise=geometry.pairwise_distances(st.train_x[st.train_y == pos]),
                       ref_names=["null", f"class {st.class_names[neg]}"], pos_name=st.class_names[pos],
                       scale=scale, x0_note=f"the {len(x0)} held-out (test-split) images of class "
                                            f"{st.class_names[pos]}, one fixed noise draw each",
                       exact_note=exact_note)
    return al


def removal_guides(st: Study, k: int, n: int, scales: Sequence[float] = REMOVAL_SCALES) -> dict[str, Guided]:
    """'Anything but k' for n samples: unconditional s = 1, static at each scale, posterior-aware, and the exact
    baseline (labels in quotas of the training prior without k, sampled at s = 1)."""
    from .pipeline import quota_labels

    nulls = torch.full((n,), st.null, device=st.device)
    prior = class_prior(st.train_y, st.null)
    sets = {"unconditional, s = 1": guide(st.model, nulls, scale=1.0)}
    sets.update({f"static, s = {s:g}": guide(st.model, nulls, scale=s, negatives=[(k, 1.0)]) for s in scales})
    sets[f"posterior-aware, lambda = {DYNAMIC_LAMBDA:g}"] = guide(
        st.model, nulls, scale=DYNAMIC_CEILING, negatives=[(k, 1.0)], dynamic=DYNAMIC_LAMBDA)
    sets["exact: y ~ prior without k, s = 1"] = guide(
        st.model, quota_labels(prior, n, removed=[k]).to(st.device), scale=1.0)
    return sets


def removal_figure(st: Study, path: str, *, k: int, seeds: Sequence[int],
                   scales: Sequence[float] = REMOVAL_SCALES) -> dict:
    """figures/removal.png; returns {set name: ((K,) class frequencies, TV to the model's own p(x | not k))}."""
    from . import viz

    K = len(st.class_names)
    freqs = {}
    for name, g in removal_guides(st, k, len(seeds), scales).items():
        freqs[name] = np.bincount(st.classify(generate(g, st.schedule, st.sampler, seeds=list(seeds))),
                                  minlength=K) / len(seeds)
    own = target_histogram([-1], [[k]], next(iter(freqs.values())))     # the model's p(x | not k): unguided, k dropped
    result = {name: (f, math.nan if i == 0 else total_variation(f, own)) for i, (name, f) in enumerate(freqs.items())}
    viz.plot_removal(path, freqs=[(name, f, tv) for name, (f, tv) in result.items()], class_names=st.class_names,
                     k=k, n=len(seeds))
    return result


def posterior_figure(st: Study, path: str, *, k: int, seeds: Sequence[int]) -> dict:
    """figures/posterior.png: p_t(k | x_t) along 'anything but k' chains, static s = 3 (tracked, not steered by
    it) and posterior-aware, and the scale each applied; returns {name: (mean p at the last step, share judged k)}."""
    from . import viz

    nulls = torch.full((len(seeds),), st.null, device=st.device)
    runs, ts = [], []
    for name, g in (("static, s = 3", guide(st.model, nulls, scale=3.0, negatives=[(k, 1.0)])),
                    (f"posterior-aware, lambda = {DYNAMIC_LAMBDA:g}",
                     guide(st.model, nulls, scale=DYNAMIC_CEILING, negatives=[(k, 1.0)], dynamic=DYNAMIC_LAMBDA))):
        with torch.no_grad():
            steps = list(trajectory(g, st.schedule, st.sampler, seeds=list(seeds), track=True))
        ts = np.array([s.t for s in steps])
        runs.append((name, torch.stack([s.trace["p"] for s in steps]).cpu().numpy(),
                     torch.stack([s.trace["scale"] for s in steps]).cpu().numpy(),
                     st.classify(steps[-1].x.clamp(-1, 1)) == k))
    viz.plot_posterior(path, ts=ts, runs=runs, k_name=st.class_names[k], ceiling=DYNAMIC_CEILING)
    return {name: (float(p[-1].mean()), float(hit.mean())) for name, p, _, hit in runs}


def grids_figure(st: Study, path: str, *, classes: Sequence[int], negatives: Sequence[int], scale: float,
                 n: int, seed: int) -> None:
    """figures/grids.png: n samples per class in `classes` (one row each), row i guided away from
    negatives[i]; sample j uses seed + j in every grid (as `python sample.py`)."""
    from . import viz

    labels = torch.as_tensor(list(classes)).repeat_interleave(n)                       # (K n,)
    negs = torch.as_tensor(list(negatives)).repeat_interleave(n)
    seeds = list(range(seed, seed + len(labels)))
    if len(classes) > 1 and negs.tolist() == next_class(labels, st.null).tolist():
        which = "row c avoids c + 1"
    else:
        which = "ref = " + ", ".join(f"class {st.class_names[k]}" for k in sorted(set(negatives)))
    grids = [("s = 1 (no guidance)", st.sample(labels, seeds)),
             (f"CFG, s = {scale:g} (ref = null)", st.sample(labels, seeds, scale=scale)),
             (f"negative, s = {scale:g} ({which})", st.sample(labels, seeds, scale=scale, negative=negs))]
    viz.plot_grids(path, grids=grids, nrow=n, row_names=[f"class {st.class_names[c]}" for c in classes])


def hero_figure(st: Study, path: str, *, per_class: int, seed: int,
                scales: Sequence[float] = HERO_SCALES) -> dict:
    """figures/hero.png: the same seeds at every s in `scales`, CFG (ref = null) beside negative guidance (row c:
    ref = class (c + 1) mod K, as grids.png), one row per class; returns {(method, s): (fraction judged as the row's
    class, fraction judged as its negative)} over the K x per_class samples."""
    from . import viz

    labels = class_rows(st.null, per_class, st.device)
    negs = next_class(labels, st.null)
    seeds = list(range(seed, seed + len(labels)))
    names = st.class_names
    panels, judged = [], {}
    for method, negative in (("CFG", None), ("negative", negs)):
        images = []
        for s in scales:
            x = st.sample(labels, seeds, scale=s, negative=negative)
            c = st.classify(x)
            judged[method, s] = (float((c == labels.cpu().numpy()).mean()), float((c == negs.cpu().numpy()).mean()))
            images.append(x.cpu())
        panels.append(torch.stack(images))                                       # (S, N, C, H, W)
    K = len(names)
    viz.plot_hero(path, panels=[("CFG: ref = null (the unconditional prediction)", panels[0]),
                                (f"negative: ref = class k = (c + 1) mod {K}", panels[1])],
                  scales=scales, per_row=per_class,
                  row_names=[[f"c = {names[c]}" for c in range(K)], [f"k = {names[(c + 1) % K]}" for c in range(K)]],
                  title=f"{st.dataset}: eps = eps_ref + s (eps_c - eps_ref), row c = the positive class, the same "
                        f"{per_class} seeds in every column of a row\ns = 0: the reference alone;  s = 1: class c "
                        "unguided;  s > 1: pushed away from the reference")
    return judged


@torch.no_grad()
def _follow(st: Study, guided: Guided, seeds: Sequence[int], ref: torch.Tensor | None = None
            ) -> tuple[list[int], torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Sample `guided` from `seeds`, keeping every step: (ts (S,), x_t (S, N, C, H, W) before each step,
    x0_hat (S, N, C, H, W), and with `ref` labels (N,) the guidance direction d = x0_hat(pos) - x0_hat(ref) at
    each x_t (S, N, C, H, W), from one batched forward of the two branches; else None)."""
    cfg = st.model.cfg
    x = randn((len(seeds), cfg.in_channels, cfg.image_size, cfg.image_size), seeded_generators(seeds),
              guided.pos.device)                                    # x_T, the sampler's own first draw
    ts, states, x0s, ds = [], [], [], []
    for step in trajectory(guided, st.schedule, st.sampler, seeds=list(seeds)):
        ts.append(step.t)
        states.append(x.cpu())
        x0s.append(step.x0.cpu())
        if ref is not None:
            t = torch.full((len(seeds),), step.t, device=x.device)
            e_pos, e_ref = batched_forward(st.model, x, t, [guided.pos, ref.to(x.device)])
            ds.append((st.schedule.eps_to_x0(x, t, e_pos) - st.schedule.eps_to_x0(x, t, e_ref)).cpu())
        x = step.x
    return ts, torch.stack(states), torch.stack(x0s), torch.stack(ds) if ds else None


def _first_readable(st: Study, ts: Sequence[int]) -> tuple[int, str]:
    """The index of the first sampling step the animations show, the first with abar_t >= MIN_ALPHA_BAR (ts runs
    from T-1 down, so abar_t grows along it and the hidden steps are a prefix), and the sentence that says so."""
    ab = st.schedule.alpha_bar[list(ts)]
    first = int((ab < MIN_ALPHA_BAR).sum())
    if first == 0:
        return 0, "every step shown"
    return first, (f"steps at t >= {ts[first - 1]} ({first} of {len(ts)}) not shown: there "
                   f"$\\bar\\alpha_t$ < {MIN_ALPHA_BAR:g} and $\\hat x_0$ magnifies the net's error by "
                   f"$1/\\sqrt{{\\bar\\alpha_t}}$ > {MIN_ALPHA_BAR ** -0.5:.1f}")


def denoising_animation(st: Study, path: str, *, scale: float, per_class: int, seed: int) -> None:
    """figures/denoising.gif: x_t and x0_hat at every sampling step for s = 1, CFG and negative guidance (row c
    avoids c + 1), the same seeds in every column; from the first step where abar_t >= MIN_ALPHA_BAR."""
    from . import animate

    labels = class_rows(st.null, per_class, st.device)
    seeds = list(range(seed, seed + len(labels)))
    sets = [("s = 1", guide(st.model, labels, scale=1.0)),
            (f"CFG s = {scale:g}", guide(st.model, labels, scale=scale)),
            (f"negative s = {scale:g}", guide(st.model, labels, scale=scale,
                                              negatives=[(next_class(labels, st.null), 1.0)]))]
    runs = [(name, *_follow(st, g, seeds)[:3]) for name, g in sets]
    ts = runs[0][1]
    first, skipped = _first_readable(st, ts)
    animate.animate_denoising(
        path, sets=[(name, xs[first:], x0s[first:]) for name, _, xs, x0s in runs], ts=ts[first:],
        alpha_bar=st.schedule.alpha_bar[ts[first:]].tolist(), n_steps=len(ts), nrow=per_class,
        row_names=[f"class {c}" for c in st.class_names],
        row_means=st.means[:-1].reshape(len(st.class_names), *runs[0][2].shape[2:]),
        note=f"same seeds in every column; negative: row c has ref = class (c + 1) mod {len(st.class_names)}\n"
             f"{skipped}")


def plane_animation(st: Study, path: str, *, pos: int, neg: int, scale: float, seeds: Sequence[int]) -> None:
    """figures/plane.gif: the x0_hat clouds of class pos moving on the PCA plane, s = 1, CFG and negative
    guidance, with the push (s - 1) d of each guided cloud drawn from its mean at every shown step (from the first
    where abar_t >= MIN_ALPHA_BAR)."""
    from . import animate

    labels = torch.full((len(seeds),), pos, device=st.device)
    clouds = []
    for name, ref, kw in ((f"s = 1 (class {st.class_names[pos]})", None, dict(scale=1.0)),
                          (f"CFG s = {scale:g} (ref = null)", st.null, dict(scale=scale)),
                          (f"negative s = {scale:g} (ref = class {st.class_names[neg]})", neg,
                           dict(scale=scale, negatives=[(neg, 1.0)]))):
        ts, _, x0s, d = _follow(st, guide(st.model, labels, **kw), seeds,
                                None if ref is None else torch.full_like(labels, ref))
        first, skipped = _first_readable(st, ts)
        x0s = x0s[first:]
        pts = np.stack([st.plane.project(x) for x in x0s])                                  # (S, M, 2)
        push = None
        if d is not None:                     # the plane is affine: P(a + v) - P(a) is v's linear image
            mean_x0, mean_push = x0s.mean(1), (scale - 1) * d[first:].mean(1)             # (S, C, H, W)
            push = st.plane.project(mean_x0 + mean_push) - st.plane.project(mean_x0)     # (S, 2)
        clouds.append((name, pts, push))
    animate.animate_plane(path, **st.backdrop(), pos=pos, neg=neg, clouds=clouds, ts=ts[first:],
                          alpha_bar=st.schedule.alpha_bar[ts[first:]].tolist(), n_steps=len(ts),
                          note=skipped + ".")


def make_figures(st: Study, which: Sequence[str], *,
                 out: str,                          # folder, already checked writable
                 pos: int, neg: int,                # the pair of every figure (removal removes neg)
                 scale: float,                      # s of the guided clouds and grids
                 seed: int,                         # sample i of every cloud / grid uses seed + i
                 cloud_n: int,                      # samples per cloud (means, removal)
                 grid_classes: Sequence[int],       # rows of grids.png
                 grid_negatives: Sequence[int],     # the negative of each row
                 grid_n: int,                       # samples per grid row
                 n_trajectories: int = 5,
                 ) -> list[str]:
    """Write the requested figures into `out`; print the numbers each one measured; return the paths."""
    names, cloud = st.class_names, list(range(seed, seed + cloud_n))
    written = []
    for name in which:
        path = os.path.join(out, f"{name}.{'gif' if name in ANIMATIONS else 'png'}")
        if name == "hero":
            for (method, s), (acc, rate) in hero_figure(st, path, per_class=HERO_PER_CLASS, seed=seed).items():
                print(f"  hero {method} s = {s:g}: judged as the row's class {acc:.0%}, as its negative "
                      f"(c + 1) {rate:.0%} of {HERO_PER_CLASS * len(names)}")
        elif name == "means":
            for cloud_name, (acc, rate) in means_figure(st, path, pos=pos, neg=neg, scale=scale, seeds=cloud).items():
                print(f"  {cloud_name}: judged {names[pos]} {acc:.1%}, judged {names[neg]} {rate:.1%} of {cloud_n}")
        elif name == "trajectories":
            trajectories_figure(st, path, pos=pos, neg=neg, scale=scale, seeds=cloud[:n_trajectories])
        elif name == "alignment":
            al = alignment_figure(st, path, pos=pos, neg=neg, scale=scale, seed=seed)
            for src, row in zip(al.SOURCES, al.noisiest(al.cos)):
                print(f"  cos at the noisiest 10% of t, {src}: ref = null {row[0]:.3f}, "
                      f"ref = class {names[neg]} {row[1]:.3f}")
        elif name == "removal":
            for set_name, (f, tv) in removal_figure(st, path, k=neg, seeds=cloud).items():
                tv_text = "" if math.isnan(tv) else f", TV to the model's own p(x | not {names[neg]}) {tv:.3f}"
                print(f"  {set_name}: class {names[neg]} {f[neg]:.1%}{tv_text}")
        elif name == "posterior":
            for set_name, (p, hit) in posterior_figure(st, path, k=neg, seeds=cloud[:POSTERIOR_CHAINS]).items():
                print(f"  {set_name}: mean p_t({names[neg]} | x_t) at the last step {p:.3f}; judged "
                      f"{names[neg]} {hit:.1%}")
        elif name == "grids":
            grids_figure(st, path, classes=grid_classes, negatives=grid_negatives, scale=scale, n=grid_n,
                         seed=seed)
        elif name == "denoising":
            denoising_animation(st, path, scale=scale, per_class=min(grid_n, ANIMATED_PER_CLASS), seed=seed)
        elif name == "plane":
            plane_animation(st, path, pos=pos, neg=neg, scale=scale, seeds=cloud[:ANIMATED_CLOUD])
        print(f"wrote {path}")
        written.append(path)
    return written
