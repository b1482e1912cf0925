"""Every matplotlib figure of toydiff (the only module that imports matplotlib; Agg backend, files only).

Each `plot_*` takes arrays already computed (by `geometry.py` / `figures.py`) and writes one PNG; the GIFs are
drawn by `animate.py` with the same helpers. Conventions shared by every figure:
- colours: data classes in faint tab10 (class c always tab10 colour c), s = 1 grey, CFG blue, negative guidance red;
- time runs in sampling order, t = T-1 (pure noise) on the left to t = 0 (clean) on the right;
- no arrow is dropped: `_arrow` shortens one that would leave a fixed view and writes its true length.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .files import atomic_write  # noqa: E402
from .geometry import Alignment  # noqa: E402

NONE_C, CFG_C, NEG_C = "#555555", "#1f5fbf", "#d62728"
DPI = 130
TIME_LABEL = "timestep t, in sampling order\n(T-1 = pure noise on the left, 0 = clean on the right)"


def _save(fig, path: str) -> None:
    """A PNG, written atomically (`files.atomic_write`)."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", facecolor="white"))
    finally:
        plt.close(fig)


def _plane(ax, data2d: np.ndarray, labels: np.ndarray, means2d: np.ndarray, class_names: Sequence[str],
           explained: np.ndarray, *, highlight: Sequence[int] = ()) -> None:
    """The shared backdrop: training data on the PCA plane, faint by class, each class mean labelled."""
    cmap = plt.get_cmap("tab10")
    ax.scatter(data2d[:, 0], data2d[:, 1], c=[cmap(int(c) % 10) for c in labels], s=6, alpha=0.12, lw=0,
               zorder=1)
    for c, name in enumerate(class_names):
        bold = c in highlight
        ax.scatter(*means2d[c], s=260 if bold else 150, color="white", edgecolor=cmap(c % 10),
                   lw=2.5 if bold else 1.5, zorder=9 if bold else 5)
        ax.annotate(name, means2d[c], ha="center", va="center", fontsize=10 if bold else 8,
                    fontweight="bold" if bold else "normal", color=cmap(c % 10), zorder=10 if bold else 6)
    ax.scatter(*means2d[-1], marker="*", s=320, color="black", edgecolor="white", zorder=6,
               label="global mean $\\mu$")
    ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
    ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(alpha=0.2)


ARROW_MARGIN = 0.03          # an arrow shortened to a fixed view ends this fraction of the view inside its edge


def _arrow(ax, start: np.ndarray, end: np.ndarray, color: str, label: str | None, *,
           max_length: float | None = None,     # data units; a longer arrow is drawn this long
           lw: float = 2.8, alpha: float = 1.0) -> float:
    """An arrow start -> end that is always drawn: matplotlib's `annotate` silently drops one whose head leaves
    the axes. On autoscaling axes the view grows to hold it. On fixed limits (`set_xlim` / `set_ylim` called
    first), or when it is longer than `max_length`, it is drawn shortened along its own direction so that its head
    stays in view, and its true length is written beside it. Returns the fraction of its length drawn (1: all)."""
    start, end = np.asarray(start, dtype=float), np.asarray(end, dtype=float)
    v = end - start
    length = float(np.hypot(*v))
    frac = 1.0
    if ax.get_autoscalex_on() and ax.get_autoscaley_on():
        ax.update_datalim(np.stack([start, end]))
        ax.autoscale_view()
    else:
        (x0, x1), (y0, y1) = sorted(ax.get_xlim()), sorted(ax.get_ylim())
        margin = ARROW_MARGIN * np.array([x1 - x0, y1 - y0])
        lo, hi = np.array([x0, y0]) + margin, np.array([x1, y1]) - margin
        start = np.clip(start, lo, hi)
        for i in range(2):                                   # the largest f with start + f v inside [lo, hi]
            if v[i] > 0:
                frac = min(frac, (hi[i] - start[i]) / v[i])
            elif v[i] < 0:
                frac = min(frac, (lo[i] - start[i]) / v[i])
    if max_length is not None and length > max_length:
        frac = min(frac, max_length / length)
    head = start + frac * v
    ax.annotate("", xy=head, xytext=start, zorder=7, annotation_clip=False,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=lw, mutation_scale=18, alpha=alpha))
    if frac < 1 - 1e-6:                          # beside the drawn shaft's middle, which is always in view
        normal = np.array([-v[1], v[0]]) / length
        ax.annotate(f"length {length:.1f}\n(drawn {frac:.0%})", start + 0.5 * frac * v, xytext=10 * normal,
                    textcoords="offset points", ha="left" if normal[0] >= 0 else "right",
                    va="bottom" if normal[1] >= 0 else "top", fontsize=9, color=color, zorder=11,
                    bbox=dict(boxstyle="round,pad=0.15", fc="white", ec="none", alpha=0.8))
    if label:
        ax.plot([], [], color=color, lw=lw, alpha=alpha, label=label)
    return frac


def plot_means(path: str, *,
               data2d: np.ndarray,               # (N, 2) training images on the plane
               labels: np.ndarray,               # (N,)
               means2d: np.ndarray,              # (K + 1, 2): mu_c, last row mu
               explained: np.ndarray,            # (2,) explained variance ratios
               class_names: Sequence[str],
               pos: int, neg: int, scale: float,
               clouds: Sequence[tuple[str, np.ndarray, float, float]],  # (name, (M, 2), judged pos, judged neg)
               ) -> None:
    """Class means, the CFG and negative-guidance directions, and the three sample clouds with their means."""
    fig, ax = plt.subplots(figsize=(9, 8))
    _plane(ax, data2d, labels, means2d, class_names, explained, highlight=(pos, neg))
    mu, mp, mn = means2d[-1], means2d[pos], means2d[neg]
    _arrow(ax, mu, mp, CFG_C, f"CFG direction $\\mu_{{{class_names[pos]}}} - \\mu$")
    _arrow(ax, mn, mp, NEG_C, f"negative direction $\\mu_{{{class_names[pos]}}} - \\mu_{{{class_names[neg]}}}$")
    styles = [(NONE_C, "o"), (CFG_C, "^"), (NEG_C, "s")]
    for (name, pts, acc, rate), (color, marker) in zip(clouds, styles):
        ax.scatter(pts[:, 0], pts[:, 1], s=14, marker=marker, color=color, alpha=0.45, lw=0, zorder=3,
                   label=f"{name}\n    judged {class_names[pos]}: {acc:.1%},  judged {class_names[neg]}: {rate:.1%}")
        ax.scatter(*pts.mean(0), s=220, marker="X", color=color, edgecolor="white", lw=1.5, zorder=8)
    ax.scatter([], [], s=120, marker="X", color="black", edgecolor="white", label="mean of each cloud")
    rates = ",  ".join(f"{name.split(' (')[0]} {rate:.1%}" for name, _, _, rate in clouds)
    ax.set_title(f"{len(clouds[0][1])} samples of class {class_names[pos]} per cloud on the PCA plane of the "
                 f"training images; negative = {class_names[neg]}\n"
                 f"negative-class rate (judged {class_names[neg]}): {rates}", fontsize=11)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9, frameon=False)
    _save(fig, path)


def plot_trajectories(path: str, *,
                      data2d: np.ndarray, labels: np.ndarray, means2d: np.ndarray, explained: np.ndarray,
                      class_names: Sequence[str], pos: int, neg: int, scale: float,
                      paths: Sequence[tuple[str, np.ndarray]],    # (name, (steps, seeds, 2)); the first is s = 1
                      ) -> None:
    """x0_hat along the sampling steps, one panel per guided method, the s = 1 path faint in each."""
    (base_name, base), guided = paths[0], paths[1:]
    fig, axes = plt.subplots(1, len(guided), figsize=(7 * len(guided), 6.6))
    axes = np.atleast_1d(axes)
    for ax, (name, p), color in zip(axes, guided, (CFG_C, NEG_C)):
        _plane(ax, data2d, labels, means2d, class_names, explained, highlight=(pos, neg))
        for j in range(p.shape[1]):
            ax.plot(base[:, j, 0], base[:, j, 1], color=NONE_C, lw=1, ls=":", alpha=0.8, zorder=3,
                    label=base_name if j == 0 else None)
            ax.plot(p[:, j, 0], p[:, j, 1], color=color, lw=1.6, marker=".", ms=3, alpha=0.85, zorder=4,
                    label=name if j == 0 else None)
            ax.scatter(*p[0, j], s=60, facecolor="white", edgecolor=color, lw=1.8, zorder=8,
                       label="start (t = T-1)" if j == 0 else None)
            ax.scatter(*p[-1, j], s=110, marker="*", color=color, edgecolor="black", lw=0.6, zorder=8,
                       label="end (sample)" if j == 0 else None)
        ax.set_title(name, fontsize=11)
        ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    lims = np.array([[*ax.get_xlim(), *ax.get_ylim()] for ax in axes])          # one view for every panel
    for ax in axes:
        ax.set_xlim(lims[:, 0].min(), lims[:, 1].max())
        ax.set_ylim(lims[:, 2].min(), lims[:, 3].max())
        ax.set_aspect("equal", adjustable="box")
    fig.suptitle(f"$\\hat x_0$ at every sampling step, {base.shape[1]} fixed seeds, class {class_names[pos]}, "
                 f"s = {scale:g} (dotted: the same seeds at s = 1)", fontsize=12)
    _save(fig, path)


def plot_alignment(path: str, al: Alignment, *,
                   pairwise: np.ndarray,              # within-class distances ||x_i - x_j||, pos class
                   ref_names: Sequence[str],          # one per al.refs, e.g. "null", "class 9"
                   pos_name: str, scale: float,
                   x0_note: str,                      # which x0 made the x_t
                   exact_note: str,                   # which training points D* sums over
                   ) -> None:
    """(a) cos(d, mu_pos - mu_ref) and (b) ||d|| / ||mu_pos - mu_ref|| over t; (c) the mean distances
    beside the within-class spread."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2), gridspec_kw=dict(width_ratios=[1, 1, 0.9]))
    colors = [CFG_C if name == "null" else NEG_C for name in ref_names]
    t = al.t
    for ax, values, ylabel in ((axes[0], al.cos, "cos(d, $\\mu_{pos} - \\mu_{ref}$)"),
                               (axes[1], al.ratio, "$\\|d\\| \\, / \\, \\|\\mu_{pos} - \\mu_{ref}\\|$")):
        for r, (name, color) in enumerate(zip(ref_names, colors)):
            for src, ls in ((0, "-"), (1, "--")):
                v = values[src, r]                                           # (T', B)
                mid, lo, hi = _quartiles(v)
                label = f"{Alignment.SOURCES[src]} {'(learned)' if src == 0 else 'D* (training set)'}, ref = {name}"
                ax.plot(t, mid, color=color, ls=ls, lw=2, label=label)
                ax.fill_between(t, lo, hi, color=color, alpha=0.12 if src == 0 else 0.07, lw=0)
        ax.axvspan(0.9 * (t.max() + 1), t.max(), color="#f2c14e", alpha=0.25, lw=0, label="noisiest 10% of t")
        ax.axhline(1.0, color="black", lw=0.7, alpha=0.5)
        ax.set_xlabel(TIME_LABEL)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.25)
        ax.set_xlim(t.max(), t.min())                                       # sampling order: T-1 on the left
    axes[0].set_ylim(-0.45, 1.05)
    axes[0].set_title("(a) direction: does guidance push along $\\mu_{pos} - \\mu_{ref}$?", fontsize=11)
    axes[1].set_title("(b) length: $\\|d\\|$ in units of the mean-to-mean distance", fontsize=11)
    axes[1].set_yscale("log")
    axes[1].set_ylim(1e-2, 10)
    axes[0].legend(loc="lower right", fontsize=8, framealpha=0.9)
    axes[0].annotate("abar < 1e-3: the class signal left in eps,\n"
                     "sqrt(abar) (mu_pos - mu_ref) / sqrt(1 - abar),\nis below the learned net's error",
                     xy=(0.985 * t.max(), 0.5), xytext=(0.95 * t.max(), 0.12), va="top", fontsize=8,
                     arrowprops=dict(arrowstyle="->", color="black", lw=0.8))

    ax = axes[2]
    ax.hist(pairwise, bins=50, color="#999999", alpha=0.7, density=True,
            label=f"$\\|x_i - x_j\\|$, pairs within class {pos_name}")
    ax.axvline(np.median(pairwise), color="black", lw=1.2, ls=":",
               label=f"median within-class distance {np.median(pairwise):.2f}")
    for name, dist, color in zip(ref_names, al.mu_dist, colors):
        ax.axvline(dist, color=color, lw=2.2, label=f"$\\|\\mu_{{{pos_name}}} - \\mu_{{ref}}\\|$ = {dist:.2f} (ref = {name})")
        ax.axvline(scale * dist, color=color, lw=1.5, ls="--", label=f"s x that = {scale * dist:.2f} (s = {scale:g})")
    ax.set_xlabel("distance in image space")
    ax.set_yticks([])
    ax.set_title(f"(c) mean-to-mean distance vs the spread within class {pos_name}", fontsize=11)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    fig.suptitle(f"Guidance direction d = $\\hat x_0$(pos) - $\\hat x_0$(ref) against the mean-to-mean direction, "
                 f"pos = class {pos_name}; lines: median, bands: 25-75%\n"
                 f"x_t = q_sample(x0, t) with x0 = {x0_note};  D* over {exact_note}", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def _quartiles(v: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median, 25% and 75% over axis 1 ignoring NaN; NaN (a gap in the line) where most values are NaN."""
    enough = np.isfinite(v).mean(axis=1) >= 0.5
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        q = np.nanpercentile(v, [50, 25, 75], axis=1)
    q[:, ~enough] = np.nan
    return q[0], q[1], q[2]


def plot_removal(path: str, *,
                 freqs: Sequence[tuple[str, np.ndarray, float]],   # (name, (K,) class frequencies, TV to the model)
                 class_names: Sequence[str], k: int, n: int) -> None:
    """Grouped bars: judged class frequencies of unguided samples and of 'anything but k': static at a few scales,
    posterior-aware, and the exact baseline; each legend entry carries its forbidden rate and TV."""
    K = len(class_names)
    fig, ax = plt.subplots(figsize=(12, 4.8))
    width = 0.84 / len(freqs)
    statics = [i for i, (name, _, _) in enumerate(freqs) if name.startswith("static")]
    colors = {i: plt.get_cmap("Reds")(0.4 + 0.5 * j / max(1, len(statics) - 1)) for j, i in enumerate(statics)}
    others = iter([NONE_C, CFG_C, "#2ca02c", "#9467bd"])
    for i, (name, f, tv) in enumerate(freqs):
        x = np.arange(K) + (i - (len(freqs) - 1) / 2) * width
        tv_text = "" if np.isnan(tv) else f", TV {tv:.2f}"
        ax.bar(x, f, width=width, color=colors.get(i) or next(others),
               label=f"{name}: class {class_names[k]} {f[k]:.1%}{tv_text}")
    ax.axvspan(k - 0.45, k + 0.45, color="#f2c14e", alpha=0.25, lw=0)
    ax.set_xticks(range(K), class_names)
    ax.set_xlabel("class the judge assigns")
    ax.set_ylabel("fraction of samples")
    ax.set_title(f"'Anything but {class_names[k]}' (pos = null, ref = class {class_names[k]}), {n} samples per set, "
                 f"same seeds; TV to the model's own p(x | not {class_names[k]})", fontsize=11)
    ax.legend(fontsize=8.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    ax.grid(axis="y", alpha=0.25)
    _save(fig, path)


def plot_posterior(path: str, *,
                   ts: np.ndarray,                                       # (S,) timesteps, T-1 .. 0
                   runs: Sequence[tuple[str, np.ndarray, np.ndarray, np.ndarray]],   # (name, p (S, B), s_t (S, B),
                   k_name: str, ceiling: float, lines: int = 10) -> None:            #  ended as k (B,) bool)
    """Left: p_t(k | x_t) carried along each chain (dashed: chains the judge calls k at the end); right: the scale
    s_t each step applied (median and 10-90 %)."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    colors = [NEG_C, CFG_C, "#2ca02c"]
    for (name, p, scale, ended_k), color in zip(runs, colors):
        others, hits = np.flatnonzero(~ended_k)[:lines], np.flatnonzero(ended_k)[:lines]
        axes[0].plot(ts, p[:, others], color=color, lw=0.8, alpha=0.5)
        axes[0].plot(ts, p[:, hits], color=color, lw=1.6, ls="--")
        axes[0].plot([], [], color=color, label=f"{name}: {int(ended_k.sum())} of {len(ended_k)} end as {k_name}")
        axes[1].plot(ts, np.median(scale, 1), color=color, lw=2, label=f"{name}: median")
        axes[1].fill_between(ts, *np.percentile(scale, [10, 90], axis=1), color=color, alpha=0.18, lw=0)
    axes[0].plot([], [], color="black", lw=1.6, ls="--", label=f"dashed: chains the judge calls {k_name} at the end")
    axes[0].set_ylabel(f"p_t({k_name} | x_t), carried along the chain")
    axes[1].set_ylabel("scale s_t applied at this step")
    axes[1].set_yscale("log")
    axes[1].axhline(ceiling, color="black", lw=0.7, ls=":", label=f"ceiling s = {ceiling:g}")
    for ax in axes:
        ax.set_xlabel(TIME_LABEL)
        ax.set_xlim(max(ts), min(ts))                                       # sampling order: T-1 on the left
        ax.grid(alpha=0.25)
        ax.legend(fontsize=8.5)
    fig.suptitle(f"Posterior-aware removal of {k_name}: s_t = 1 + p / (1 - p), p = p_t({k_name} | x_t); "
                 "static guidance pushes with the same s at every step", fontsize=11)
    _save(fig, path)


def plot_grids(path: str, *,
               grids: Sequence[tuple[str, torch.Tensor]],   # (title, images (N, C, H, W) in [-1, 1])
               nrow: int,                                   # images per row
               row_names: Sequence[str] = ()) -> None:      # a label per row, left of the first grid
    """Sample grids side by side, each titled (same seeds in every grid)."""
    from torchvision.utils import make_grid

    fig, axes = plt.subplots(1, len(grids), figsize=(4.2 * len(grids), 4.2 * _rows(grids, nrow) / nrow + 0.6))
    for ax, (title, images) in zip(np.atleast_1d(axes), grids):
        g = make_grid((images.detach().cpu().float() + 1) / 2, nrow=nrow, padding=1, pad_value=1.0)
        ax.imshow(g.permute(1, 2, 0).clamp(0, 1).numpy(), cmap="gray" if images.shape[1] == 1 else None,
                  interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    if row_names:
        cell = images.shape[-2] + 1                                            # make_grid padding = 1
        axes_list = np.atleast_1d(axes)
        axes_list[0].set_yticks([1 + cell * (i + 0.5) for i in range(len(row_names))], row_names)
        axes_list[0].tick_params(length=0)
    fig.tight_layout()
    _save(fig, path)


def _rows(grids, nrow: int) -> int:
    return -(-len(grids[0][1]) // nrow)


def plot_sweep(path: str, result: dict) -> None:
    """Four panels against the guidance scale s (accuracy, negative-class rate, diversity, classifier-FID),
    one line per method; `result` is `sweep.run_sweep`'s dict. Dotted: the real-data reference."""
    colors = {"cfg": CFG_C, "negative": NEG_C, "autoguidance": "#2ca02c", "interval": "#9467bd"}
    panels = [("accuracy", "class accuracy (judge)", True), ("neg_rate", "negative-class rate, (c+1) mod K", True),
              ("diversity", "diversity / real", False), ("fid", "classifier-FID vs real test", False)]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    for ax, (key, title, pct) in zip(axes, panels):
        for name, m in result["methods"].items():
            y = np.array([np.nan if v is None else v for v in m[key]], dtype=float) * (100 if pct else 1)
            ax.plot(m["scales"], y, "o-", color=colors.get(name), label=name, lw=1.8, ms=4)
        ref = {"accuracy": result.get("judge_test_accuracy"), "diversity": result["real"].get("diversity"),
               "fid": result["real"].get("fid")}.get(key)
        if ref is not None:
            ax.axhline(ref * (100 if pct else 1), color="black", lw=0.8, ls=":",
                       label="judge test acc." if key == "accuracy" else "real train vs test")
        ax.axvline(1, color=NONE_C, lw=0.6, ls="--")
        ax.set_xlabel("guidance scale s  (s = 1: none; w = s - 1)")
        ax.set_title(title + (" (%)" if pct else ""), fontsize=10)
        ax.grid(alpha=0.25)
    axes[0].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    st = result["settings"]
    fig.suptitle(f"Guidance sweep: {st['n_per_class']} samples per class x {st['classes']} classes, same seeds, "
                 f"{st['sampler']}; interval = CFG for t in [{st['interval'][0]}, "
                 f"{st['interval'][1]}]", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def plot_hero(path: str, *,
              panels: Sequence[tuple[str, torch.Tensor]],   # (title, images (S, N, C, H, W) in [-1, 1]), S scales
              scales: Sequence[float],                      # (S,) the guidance scale of each column group
              per_row: int,                                 # images per row and scale (N = rows x per_row)
              row_names: Sequence[Sequence[str]],           # per panel, a label per row ("" : none)
              title: str) -> None:
    """The README's first figure: per panel a block of columns per scale s, one row per class, the same seeds in
    every block and panel, so only s and the reference change from block to block."""
    from torchvision.utils import make_grid

    def block(images: torch.Tensor) -> np.ndarray:                      # (N, C, H, W) -> (rows x per_row) mosaic
        g = make_grid((images.detach().cpu().float() + 1) / 2, nrow=per_row, padding=1, pad_value=1.0)
        return g.permute(1, 2, 0).clamp(0, 1).numpy()

    gap = 4                                                             # white pixels between scale blocks
    first = block(panels[0][1][0])
    h, w = first.shape[:2]
    fig, axes = plt.subplots(1, len(panels), squeeze=False,
                             figsize=(0.42 * len(panels) * len(scales) * w / 10 + 1.6, 0.42 * h / 10 + 1.2))
    for ax, (name, images), names in zip(axes[0], panels, row_names):
        blocks = [block(x) for x in images]
        sep = np.ones((h, gap, first.shape[2]))
        mosaic = np.concatenate([piece for b in blocks for piece in (b, sep)][:-1], axis=1)
        ax.imshow(mosaic.squeeze(-1) if mosaic.shape[2] == 1 else mosaic, cmap="gray", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_xticks([w / 2 + i * (w + gap) for i in range(len(scales))], [f"s = {s:g}" for s in scales],
                      fontsize=10)
        ax.xaxis.tick_top()
        rows = (h - 1) // (images.shape[-2] + 1)
        ax.set_yticks([1 + (images.shape[-2] + 1) * (i + 0.5) for i in range(rows)], list(names)[:rows],
                      fontsize=9)
        ax.tick_params(length=0)
        ax.set_title(name, fontsize=11, pad=22)
        for side in ax.spines.values():
            side.set_visible(False)
    if len(panels) > 1:                                                 # the last panel's labels on its right
        axes[0, -1].yaxis.tick_right()
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    _save(fig, path)

