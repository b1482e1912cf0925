"""Every matplotlib figure of the 2D playground (Agg backend, files only, written atomically like viz.py's).

Each `plot_*` takes arrays already computed (by `toy2d.py` / `playground.py`) and writes one PNG (or a GIF).
One fixed palette: the classes in CLASS_C (the same in every figure and every frame), s = 1 grey, CFG blue,
negative guidance red, the exact model solid, the learned one dashed. Arrows are drawn with quiver, inside the axes:
none is silently dropped (annotate drops an arrow whose head leaves the axes).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from .files import atomic_write  # noqa: E402

CLASS_C = ("#e377c2", "#8c564b", "#2ca02c", "#ff7f0e", "#17becf", "#bcbd22")   # A, B, far, arc, ...
NONE_C, CFG_C, NEG_C, EXACT_C, LEARNED_C = "#555555", "#1f5fbf", "#d62728", "#000000", "#9b30d9"
DPI = 110
FONT = 10                               # pt; nothing smaller than 9
plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "legend.fontsize": 9, "xtick.labelsize": 9,
                     "ytick.labelsize": 9})


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def _save(fig, path: str) -> None:
    """A PNG, written atomically (`files.atomic_write`)."""
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI, bbox_inches="tight", facecolor="white"))
    finally:
        plt.close(fig)


def _frame(ax, lim: float = 1.1) -> None:
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.tick_params(length=2)


def plot_points(path: str, points, labels, *, title: str, class_names: Sequence[str] | None = None) -> None:
    """A scatter of 2D samples coloured by class (train.py's first look at a 2D run)."""
    x, y = _np(points), _np(labels).astype(int)
    fig, ax = plt.subplots(figsize=(4.6, 4.6))
    for c in np.unique(y):
        name = class_names[c] if class_names else f"class {c}"
        ax.scatter(*x[y == c].T, s=5, alpha=0.6, lw=0, color=CLASS_C[c % len(CLASS_C)], label=name)
    _frame(ax)
    ax.legend(loc="lower left", markerscale=3, frameon=False)
    ax.set_title(title)
    _save(fig, path)


def _classes(ax, backdrop: dict) -> None:
    """Each class's density p(x | c) as two contour lines (5 % and 40 % of its peak) in its colour, and the means:
    mu (black +) and mu_c (the class's colour, x). `backdrop`: axis (n,), density (K, n, n), mu (2,), mu_c (K, 2)."""
    axis, dens = _np(backdrop["axis"]), _np(backdrop["density"])
    for c, d in enumerate(dens):
        ax.contour(axis, axis, d, levels=[0.05 * d.max(), 0.4 * d.max()], colors=[CLASS_C[c]], linewidths=0.8,
                   alpha=0.8, zorder=1)
    mu, mu_c = _np(backdrop["mu"]), _np(backdrop["mu_c"])
    ax.scatter(*mu, marker="+", s=90, color="black", lw=1.6, zorder=5)
    for c, m in enumerate(mu_c):
        ax.scatter(*m, marker="x", s=50, color=CLASS_C[c], lw=1.8, zorder=5)


def _quiver(ax, start, delta, color: str, label: str | None = None) -> None:
    """Arrows start -> start + delta in data units (quiver: an arrow leaving the axes is clipped, never dropped)."""
    s, d = _np(start), _np(delta)
    ax.quiver(s[:, 0], s[:, 1], d[:, 0], d[:, 1], angles="xy", scale_units="xy", scale=1, color=color, width=0.005,
              headwidth=3.5, headlength=4, alpha=0.85, zorder=3, label=label)


def class_legend(fig, names: Sequence[str], extra: Sequence[tuple[str, str]] = ()) -> None:
    """One legend for the figure: the classes' colours, then `extra` (colour, label) pairs."""
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=CLASS_C[c], lw=2, label=f"class {n}") for c, n in enumerate(names)]
    handles += [Line2D([], [], color=col, lw=2, label=lab) for col, lab in extra]
    handles += [Line2D([], [], color="black", marker="+", ls="", ms=9, label="mu (all data)"),
                Line2D([], [], color="#777777", marker="x", ls="", ms=7, label="mu_c (class means)")]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), frameon=False,
               bbox_to_anchor=(0.5, -0.02))


def plot_field(path: str, *,
               points,                          # (P, 2) the x_t where the field is drawn
               rows: Sequence[tuple[str, dict, dict]],   # (row title, exact field, learned field), `playground.field`
               backdrop: dict,                  # see `_classes`
               pos: str, neg: str, scale: float, names: Sequence[str]) -> None:
    """The denoiser's field at several noise levels, exact beside learned. Per model two panels: x0_hat(null) (grey)
    and x0_hat(pos) (pos's colour) as arrows x_t -> x0_hat; the pushes guidance at s adds to x0_hat(pos), drawn from
    x0_hat(pos) (a dot): (s - 1)(x0_hat(pos) - x0_hat(null)) (CFG, blue), (s - 1)(x0_hat(pos) - x0_hat(neg))
    (negative, red), so each arrow ends at the guided x0_hat."""
    ipos = list(names).index(pos)
    fig, axes = plt.subplots(len(rows), 4, figsize=(15, 3.9 * len(rows)), squeeze=False)
    for r, (title, *fields) in enumerate(rows):
        for m, (model, f) in enumerate(zip(("exact", "learned"), fields)):
            a, b = axes[r, 2 * m], axes[r, 2 * m + 1]
            for ax, lim in ((a, 1.1), (b, 1.8)):       # the pushes reach past the data: a wider frame, heads inside
                _classes(ax, backdrop)
                _frame(ax, lim)
            _quiver(a, points, f["null"] - _np(points), NONE_C)
            _quiver(a, points, f["pos"] - _np(points), CLASS_C[ipos])
            a.set_title(f"{model}, {title}:\nx_t -> x0_hat(null), x0_hat({pos})")
            _quiver(b, f["pos"], (scale - 1) * _np(f["cfg"]), CFG_C)
            _quiver(b, f["pos"], (scale - 1) * _np(f["negative"]), NEG_C)
            b.scatter(*_np(f["pos"]).T, s=8, color=CLASS_C[ipos], zorder=4)
            b.set_title(f"{model}, {title}:\nfrom x0_hat({pos}): pushes at s = {scale:g}")
    class_legend(fig, names, [(NONE_C, "x0_hat(null)"), (CFG_C, "CFG push (s-1)(x0_hat(c) - x0_hat(null))"),
                              (NEG_C, "negative push (s-1)(x0_hat(c) - x0_hat(k))")])
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    _save(fig, path)


def _target(ax, axis, prob, cmap: str) -> None:
    """An exact target density (cell probabilities (n, n)) as a filled image."""
    a = _np(axis)
    h = a[1] - a[0]
    ax.imshow(_np(prob), origin="lower", extent=(a[0] - h / 2, a[-1] + h / 2, a[0] - h / 2, a[-1] + h / 2),
              cmap=cmap, interpolation="nearest", zorder=0)


def _dots(ax, exact, learned, n: int = 600) -> None:
    ax.scatter(*_np(exact)[:n].T, s=3, color=EXACT_C, lw=0, alpha=0.7, zorder=4)
    if learned is not None:
        ax.scatter(*_np(learned)[:n].T, s=3, color=LEARNED_C, lw=0, alpha=0.7, zorder=4)


def plot_guided(path: str, *,
                rows: Sequence[tuple[str, str, Sequence[dict]]],   # (row title, colour map, panels)
                backdrop: dict, names: Sequence[str]) -> None:
    """Guided samples over the exact tilted target p(x | pos)^s p(x | ref)^(1 - s) (filled) and the classes'
    p(x | c) (contours). A panel dict: title, prob (n, n) the target's cells, exact (N, 2), learned (N, 2)."""
    cols = max(len(p) for _, _, p in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(3.8 * cols, 3.9 * len(rows)), squeeze=False)
    for r, (row, cmap, panels) in enumerate(rows):
        for c, p in enumerate(panels):
            ax = axes[r, c]
            _target(ax, backdrop["axis"], p["prob"], cmap)
            _classes(ax, backdrop)
            _dots(ax, p["exact"], p.get("learned"))
            _frame(ax)
            ax.set_title(f"{row}: {p['title']}", fontsize=FONT)
    class_legend(fig, names, [(EXACT_C, "samples, exact model"), (LEARNED_C, "samples, learned MLP")])
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)


def plot_trajectories(path: str, *,
                      panels: Sequence[tuple[str, str, object, object]],   # (title, colour, exact x (S+1, B, 2),
                                                                           #  learned x (S+1, B, 2))
                      backdrop: dict, names: Sequence[str]) -> None:
    """Particle paths x_T -> x_0 for the same seeds: exact model solid, learned dashed; a dot at each end x_0."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.4 * len(panels), 4.6), squeeze=False)
    for ax, (title, color, exact, learned) in zip(axes[0], panels):
        _classes(ax, backdrop)
        for x, ls in ((exact, "-"), (learned, "--")):
            x = _np(x)
            for b in range(x.shape[1]):
                ax.plot(x[:, b, 0], x[:, b, 1], ls=ls, color=color, lw=0.9, alpha=0.75, zorder=3)
            ax.scatter(x[-1, :, 0], x[-1, :, 1], s=14, color=color, zorder=4, edgecolor="white", lw=0.4)
        _frame(ax, 1.6)
        ax.set_title(title)
    class_legend(fig, names, [("#333333", "exact model (solid)"), ("#999999", "learned MLP (dashed)")])
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def plot_removal(path: str, *,
                 panels: Sequence[dict],          # title, exact (N, 2), learned (N, 2)
                 target: object,                  # (n, n) cells of p(x | not k)
                 masses: dict[str, Sequence[float]],   # bar label -> class masses (K,)
                 backdrop: dict, names: Sequence[str], k: str) -> None:
    """Removal of class k: samples of each method over the exact p(x | not k) (filled), then the class masses
    (the exact Bayes classifier, mean p(c | x)) of every set beside the target's."""
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(3.9 * (len(panels) + 1), 4.2))
    for ax, p in zip(axes, panels):
        _target(ax, backdrop["axis"], target, "Greens")
        _classes(ax, backdrop)
        _dots(ax, p["exact"], p.get("learned"))
        _frame(ax)
        ax.set_title(p["title"], fontsize=FONT)
    ax = axes[-1]
    K, width = len(names), 0.8 / len(masses)
    for i, (label, m) in enumerate(masses.items()):
        ax.bar(np.arange(K) + (i - (len(masses) - 1) / 2) * width, _np(m), width, label=label,
               color=plt.get_cmap("tab10")(i), edgecolor="white", lw=0.5)
    ax.set_xticks(range(K), [f"class {n}" for n in names])
    ax.set_ylabel("class mass (mean p(c | x))")
    ax.set_title(f"class masses, removing {k}")
    ax.legend(frameon=False, fontsize=9)
    class_legend(fig, names, [(EXACT_C, "samples, exact model"), (LEARNED_C, "samples, learned MLP")])
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    _save(fig, path)


def animate(path: str, *,
            frames: Sequence[dict],           # t, abar, x (B, 2) particles, x0_null (P, 2) at `points`
            points, labels, backdrop: dict, names: Sequence[str], title: str, ms_per_frame: int = 180,
            hold: int = 8) -> None:
    """Particles x_t (coloured by their label) and the field x_t -> x0_hat(null) from t = T to 0 as a looping GIF.
    One palette for every frame (built from the first, every other frame mapped onto it): colours never flicker."""
    from PIL import Image

    fig, ax = plt.subplots(figsize=(5.2, 5.4))
    lab = _np(labels).astype(int)
    colors = [CLASS_C[c % len(CLASS_C)] if c < len(CLASS_C) else NONE_C for c in lab]
    images = []
    try:
        for f in frames:
            ax.clear()
            _classes(ax, backdrop)
            _quiver(ax, points, _np(f["x0_null"]) - _np(points), "#aaaaaa")
            ax.scatter(*_np(f["x"]).T, s=7, c=colors, lw=0, zorder=4)
            _frame(ax, 1.6)
            ax.set_title(f"{title}\nt = {f['t']}, abar_t = {f['abar']:.3f}")
            fig.canvas.draw()
            images.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3]))
    finally:
        plt.close(fig)
    first = images[0].convert("P", palette=Image.Palette.ADAPTIVE, colors=96)
    frames_p = [first] + [im.quantize(palette=first, dither=Image.Dither.NONE) for im in images[1:]]
    frames_p += [frames_p[-1]] * hold
    atomic_write(path, lambda f: frames_p[0].save(f, format="GIF", save_all=True, append_images=frames_p[1:],
                                                  duration=ms_per_frame, loop=0))
