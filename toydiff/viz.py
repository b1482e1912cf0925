"""Every matplotlib figure of toydiff (the only module that imports matplotlib; Agg backend, files only).

Each `plot_*` takes arrays already computed (by `geometry.py` / `figures.py`) and writes one PNG.
Colours are fixed across figures: data classes in faint tab10, s = 1 grey, CFG blue, negative guidance red.
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


def _arrow(ax, start: np.ndarray, end: np.ndarray, color: str, label: str) -> None:
    ax.annotate("", xy=end, xytext=start, zorder=7,
                arrowprops=dict(arrowstyle="-|>", color=color, lw=2.8, mutation_scale=18))
    ax.plot([], [], color=color, lw=2.8, label=label)


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
        ax.set_xlabel("timestep t  (0 = clean, T-1 = pure noise)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.25)
        ax.set_xlim(t.min(), t.max())
    axes[0].set_ylim(-0.45, 1.05)
    axes[0].set_title("(a) direction: does guidance push along $\\mu_{pos} - \\mu_{ref}$?", fontsize=11)
    axes[1].set_title("(b) length: $\\|d\\|$ in units of the mean-to-mean distance", fontsize=11)
    axes[1].set_yscale("log")
    axes[1].set_ylim(1e-2, 10)
    axes[0].legend(loc="lower right", fontsize=8, framealpha=0.9)
    axes[0].annotate("abar < 1e-3: the class signal left in eps,\n"
                     "sqrt(abar) (mu_pos - mu_ref) / sqrt(1 - abar),\nis below the learned net's error",
                     xy=(0.985 * t.max(), 0.5), xytext=(0.56 * t.max(), 0.08), fontsize=8,
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
        ax.set_xlabel("timestep t (noise decreases to the right)")
        ax.invert_xaxis()
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


# ---------------------------------------------------------------- animations (GIF, through Pillow, matplotlib's own)

def _save_gif(fig, draw, n_frames: int, path: str, *, max_frames: int = 26, ms_per_frame: int = 160,
              hold: int = 10) -> None:
    """Render `draw(i)` on `fig` for at most `max_frames` evenly spaced i in 0..n_frames-1 (the first and the last
    among them), hold the last frame, and write one looping GIF atomically."""
    from PIL import Image

    frames = []
    stride = -(-n_frames // max_frames)
    try:
        for i in sorted({*range(0, n_frames, stride), n_frames - 1}):
            draw(i)
            fig.canvas.draw()
            rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3]
            frames.append(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=128))
    finally:
        plt.close(fig)
    frames += [frames[-1]] * hold
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                duration=ms_per_frame, loop=0))


def animate_denoising(path: str, *,
                      sets: Sequence[tuple[str, torch.Tensor, torch.Tensor]],  # (title, x_t (S, N, C, H, W),
                                                                              #  x0_hat (S, N, C, H, W))
                      ts: Sequence[int],                     # (S,) the timestep of each frame
                      nrow: int) -> None:
    """Per set two panels side by side, x_t and x0_hat; one frame per sampling step (same seeds in every set)."""
    from torchvision.utils import make_grid

    def grid(x: torch.Tensor) -> np.ndarray:
        g = make_grid(((x.float() + 1) / 2).clamp(0, 1), nrow=nrow, padding=1, pad_value=1.0)
        return g.permute(1, 2, 0).numpy()

    first = grid(sets[0][1][0])
    panel = 1.5                                                            # inches per panel's width
    fig, axes = plt.subplots(1, 2 * len(sets), squeeze=False, dpi=72,
                             figsize=(2 * len(sets) * panel, panel * first.shape[0] / first.shape[1] + 0.9))
    shown = []
    for j, (title, _, _) in enumerate(sets):
        for i, label in enumerate(("$x_t$", "$\\hat x_0$")):
            ax = axes[0, 2 * j + i]
            shown.append(ax.imshow(first, cmap="gray", vmin=0, vmax=1, interpolation="nearest"))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}\n{label}", fontsize=8)
    head = fig.suptitle("", fontsize=11)
    fig.tight_layout()

    def draw(k: int) -> None:
        for j, (_, xs, x0s) in enumerate(sets):
            shown[2 * j].set_data(grid(xs[k]))
            shown[2 * j + 1].set_data(grid(x0s[k]))
        head.set_text(f"sampling step {k + 1} / {len(ts)}, t = {ts[k]}")
    _save_gif(fig, draw, len(ts), path)


def animate_plane(path: str, *,
                  data2d: np.ndarray, labels: np.ndarray, means2d: np.ndarray, explained: np.ndarray,
                  class_names: Sequence[str], pos: int, neg: int,
                  clouds: Sequence[tuple[str, np.ndarray, np.ndarray | None]],   # (name, x0_hat on the plane
                  #   (S, M, 2), the push (s - 1) d on the plane, mean over the cloud (S, 2) or None)
                  ts: Sequence[int]) -> None:
    """The sample clouds' x0_hat moving on the PCA plane step by step; an arrow from each guided cloud's mean shows
    the current push (s - 1)(x0_hat(pos) - x0_hat(ref)) that guidance adds to the unguided prediction."""
    fig, ax = plt.subplots(figsize=(8, 7), dpi=72)
    everything = np.concatenate([data2d] + [c[1].reshape(-1, 2) for c in clouds])
    lo, hi = np.percentile(everything, [0.5, 99.5], axis=0)
    pad = 0.08 * (hi - lo)
    colors = (NONE_C, CFG_C, NEG_C)

    def draw(k: int) -> None:
        ax.clear()
        _plane(ax, data2d, labels, means2d, class_names, explained, highlight=(pos, neg))
        for (name, pts, push), color in zip(clouds, colors):
            ax.scatter(pts[k, :, 0], pts[k, :, 1], s=12, color=color, alpha=0.5, lw=0, zorder=3, label=name)
            if push is not None:
                start = pts[k].mean(0)
                ax.annotate("", xy=start + push[k], xytext=start, zorder=9,
                            arrowprops=dict(arrowstyle="-|>", color=color, lw=2.4, mutation_scale=16))
        ax.set_aspect("equal", adjustable="box")                            # fixed limits: the box adapts
        ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
        ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        ax.legend(loc="upper left", fontsize=8, framealpha=0.9)
        ax.set_title(f"$\\hat x_0$ of class {class_names[pos]} at sampling step {k + 1} / {len(ts)} (t = {ts[k]});"
                     f"\narrows: the push guidance adds, $(s - 1)(\\hat x_0(pos) - \\hat x_0(ref))$, mean over "
                     "the cloud", fontsize=10)
    _save_gif(fig, draw, len(ts), path)
