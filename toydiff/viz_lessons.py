"""The lessons' figures (tutorial/NN_*.py): one claim each, drawn from arrays the lesson computed.

Shares viz.py's backdrop, arrows, colours and writer (s = 1 grey, CFG blue, negative red; time in sampling order,
T-1 on the left), so a lesson's figure reads like the gallery's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .viz import CFG_C, NEG_C, NONE_C, TIME_LABEL, _arrow, _save, plt

AUTO_C = "#2ca02c"


def _image(x: torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """A flat (D,) or (C, H, W) image in [-1, 1] -> (H, W[, C]) in [0, 1] for imshow."""
    x = ((x.detach().float().cpu().reshape(*shape) + 1) / 2).clamp(0, 1)
    return x[0].numpy() if x.shape[0] == 1 else x.permute(1, 2, 0).numpy()


def _grid(ax, cells: Sequence[Sequence[np.ndarray | None]], *, col_names: Sequence[str], row_names: Sequence[str],
          title: str) -> None:
    """A table of small images (None = an empty cell), column and row labels, no ticks."""
    h, w = next(c for row in cells for c in row if c is not None).shape[:2]
    canvas = np.ones(((h + 1) * len(cells) + 1, (w + 1) * len(cells[0]) + 1) + next(
        c for row in cells for c in row if c is not None).shape[2:])
    for i, row in enumerate(cells):
        for j, c in enumerate(row):
            if c is not None:
                canvas[1 + i * (h + 1): 1 + i * (h + 1) + h, 1 + j * (w + 1): 1 + j * (w + 1) + w] = c
    ax.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([1 + j * (w + 1) + w / 2 for j in range(len(cells[0]))], col_names, fontsize=8, rotation=0)
    ax.set_yticks([1 + i * (h + 1) + h / 2 for i in range(len(cells))], row_names, fontsize=9)
    ax.tick_params(length=0)
    ax.xaxis.set_ticks_position("top")
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=11, pad=22)


def plot_mean_images(path: str, *,
                     ts: Sequence[int],                          # (S,) noise levels, noisiest first
                     x0: torch.Tensor,                           # (M, C, H, W) held-out images shown
                     strip: Sequence[Sequence[torch.Tensor]],    # per t: (x_t, x0_hat(none), x0_hat(c)), (M, C, H, W)
                     mu: torch.Tensor,                           # (D,) the global mean
                     mu_c: torch.Tensor,                         # (M, D) each image's class mean
                     r: np.ndarray,                              # (S, 4) median r: model/D* for none, model/D* for c
                     class_names: Sequence[str]) -> None:        # (M,) the class of each image shown
    """Lesson 02: x_t, x0_hat(none) and x0_hat(c) at each t beside mu and mu_c; r against t (one point per t
    measured, evenly spaced, noisiest on the left)."""
    shape = x0.shape[1:]
    fig = plt.figure(figsize=(15, 8.4))
    grids = fig.add_gridspec(3, 2, width_ratios=[1, 1.05], wspace=0.12, hspace=0.45)
    cols = [str(t) for t in ts]
    blocks = (("$x_t$ (its clean image $x_0$ on the left)", 0, "$x_0$"),
              ("the model's $\hat x_0(x_t,$ none$)$, and $\mu$ on the right", 1, "$\mu$"),
              ("the model's $\hat x_0(x_t, c)$, and $\mu_c$ on the right", 2, "$\mu_c$"))
    for g, (title, k, extra) in enumerate(blocks):
        cells = []
        for m in range(len(x0)):
            row = [_image(step[k][m], shape) for step in strip]
            if k == 0:
                row = [_image(x0[m], shape)] + row
            else:
                row += [_image(mu if k == 1 else mu_c[m], shape)]
            cells.append(row)
        names = [extra] + cols if k == 0 else cols + [extra]
        _grid(fig.add_subplot(grids[g, 0]), cells, col_names=names, row_names=[f"class {c}" for c in class_names],
              title=title)
    ax = fig.add_subplot(grids[:, 1])
    x = np.arange(len(ts))
    for j, (label, color, ls) in enumerate((("model, none vs $\\mu$", CFG_C, "-"), ("D*, none vs $\\mu$", CFG_C, "--"),
                                            ("model, c vs $\\mu_c$", NEG_C, "-"), ("D*, c vs $\\mu_c$", NEG_C, "--"))):
        ax.plot(x, r[:, j], ls, color=color, marker="o", ms=5, lw=2, label=label)
    ax.set_xticks(x, cols)
    ax.set_xlabel("timestep t, in sampling order (noisiest on the left; the t measured, evenly spaced)")
    ax.set_ylabel("median  $\\|\\hat x_0 - $mean$\\| \\,/\\, \\|x_0 - $mean$\\|$ over the held-out images")
    ax.set_ylim(0, max(1.1, float(np.nanmax(r)) * 1.05))
    ax.axhline(1, color="black", lw=0.7, ls=":")
    ax.grid(alpha=0.25)
    ax.legend(fontsize=10, loc="upper center")
    ax.set_title("0 = the prediction is the mean, 1 = as far from it as the clean image", fontsize=11)
    fig.suptitle("At high noise x0_hat(none) -> $\\mu$ and x0_hat(c) -> $\\mu_c$: exactly for D* (the exact posterior "
                 "mean of the training set); the learned model follows it to t ~ 900", fontsize=12)
    _save(fig, path)


def plot_mean_plane(path: str, *,
                    panels: Sequence[tuple[int, dict]],  # (t, {source: {"pos" | ref name: x0_hat on the plane (n, 2)}})
                    refs: Sequence[str],                 # the reference names: the first CFG, the second negative
                    means2d: np.ndarray,                 # (K + 1, 2) mu_c on the plane, last row mu
                    pos: int, neg: int, class_names: Sequence[str],
                    data2d: np.ndarray, labels: np.ndarray) -> None:
    """Lesson 03: x0_hat(pos), x0_hat(none), x0_hat(k) on the mean plane at each t, and the push d of CFG and of
    negative guidance between the clouds' means; one row per source (model, D*), one column per t."""
    from .viz import _plane

    sources = list(panels[0][1])
    fig, axes = plt.subplots(len(sources), len(panels), figsize=(3.3 * len(panels), 3.5 * len(sources) + 0.8),
                             squeeze=False)
    shown = np.isin(labels, (pos, neg))
    pts = np.concatenate([data2d[shown], means2d] + [c for _, p in panels for s in p.values() for c in s.values()])
    lo, hi = np.percentile(pts, [1, 99], axis=0)
    lo, hi = np.minimum(lo, means2d.min(0)), np.maximum(hi, means2d.max(0))
    pad = 0.08 * (hi - lo)
    styles = {"pos": ("black", f"$\\hat x_0(x_t, {class_names[pos]})$"),
              refs[0]: (CFG_C, "$\\hat x_0(x_t,$ none$)$"), refs[1]: (NEG_C, f"$\\hat x_0(x_t, {class_names[neg]})$")}
    for col, (t, by_source) in enumerate(panels):
        for row, src in enumerate(sources):
            ax = axes[row, col]
            _plane(ax, data2d[shown], labels[shown], means2d, class_names, np.full(2, np.nan), highlight=(pos, neg))
            ax.set_aspect("equal", adjustable="box")
            ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
            clouds = by_source[src]
            for name, (color, label) in styles.items():
                ax.scatter(*clouds[name].T, s=9, color=color, alpha=0.45, lw=0, zorder=4,
                           label=label if (row, col) == (0, 0) else None)
            for name, color in zip(refs, (CFG_C, NEG_C)):
                _arrow(ax, clouds[name].mean(0), clouds["pos"].mean(0), color,
                       f"push d, {name}" if (row, col) == (0, 0) else None, lw=2.2)
            ax.set_xlabel("along $\\mu_{pos} - \\mu$" if row == len(sources) - 1 else "", fontsize=9)
            ax.set_ylabel(f"{src}\n(the rest of $\\mu_{{pos}} - \\mu_{{k}}$)" if col == 0 else "", fontsize=9)
            ax.set_title(f"t = {t}" if row == 0 else "", fontsize=11)
            ax.tick_params(labelsize=7)
    fig.legend(*axes[0, 0].get_legend_handles_labels(), loc="lower center", ncol=6, fontsize=9, frameon=False)
    fig.suptitle(f"The push d = $\\hat x_0$(pos) - $\\hat x_0$(ref) on the plane of $\\mu$, "
                 f"$\\mu_{{{class_names[pos]}}}$, $\\mu_{{{class_names[neg]}}}$ (held-out {class_names[pos]}s "
                 "noised to t): at high noise it runs mean to mean", fontsize=12)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    _save(fig, path)


def plot_scale(path: str, *,
               within: np.ndarray,                # (M,) distances between two training images of class pos
               nearest: np.ndarray,               # (n,) each pos image to its nearest neg image
               to_mean: dict[str, float],         # name -> a mean-to-mean distance
               rows: np.ndarray,                  # (S, 6): s, accuracy, mean p_judge(pos|x), judged neg, diversity, moved
               grids: dict[float, torch.Tensor],  # s -> (m, C, H, W) samples, the same seeds for every s
               pos: int, neg: int) -> None:
    """Lesson 04: (a) mean-to-mean against point-to-point distances; (b) what s does (accuracy, confidence,
    diversity, how far a sample moves); (c) the same seeds at every s."""
    from torchvision.utils import make_grid

    fig = plt.figure(figsize=(17, 5.2))
    gs = fig.add_gridspec(1, 3, width_ratios=[1.1, 1.1, 1.2], wspace=0.28)
    ax = fig.add_subplot(gs[0, 0])
    bins = np.linspace(0, max(within.max(), nearest.max()) * 1.02, 50)
    ax.hist(within, bins=bins, color="#999999", alpha=0.6, density=True, label=f"two {pos}s: $\\|x_i - x_j\\|$")
    ax.hist(nearest, bins=bins, color=NEG_C, alpha=0.35, density=True, label=f"a {pos} to its nearest {neg}")
    for (name, v), color in zip(to_mean.items(), (CFG_C, NEG_C)):
        ax.axvline(v, color=color, lw=2.4, label=f"{name} = {v:.2f}")
    ax.set_xlabel("distance in pixel space")
    ax.set_yticks([])
    ax.legend(fontsize=9)
    ax.set_title("(a) the means are closer than the images are", fontsize=11)

    ax = fig.add_subplot(gs[0, 1])
    s = rows[:, 0]
    for j, (label, color) in enumerate(((f"accuracy (judged {pos})", "black"),
                                        (f"mean p_judge({pos} | x)", CFG_C), (f"judged {neg}", NEG_C),
                                        ("diversity / real", AUTO_C)), start=1):
        ax.plot(s, rows[:, j], "o-", color=color, lw=2, ms=5, label=label)
    ax2 = ax.twinx()
    ax2.plot(s, rows[:, 5], "s--", color=NONE_C, lw=1.5, ms=4, label="moved from s = 1 (pixels, right axis)")
    ax2.set_ylabel("median $\\|x(s) - x(1)\\|$, same seed", color=NONE_C)
    ax.axvline(1, color=NONE_C, lw=0.7, ls=":")
    ax.set_xlabel("guidance scale s  (s = 1 none, s = 0 the unconditional model; w = s - 1)")
    ax.set_ylim(-0.03, max(1.08, 1.05 * float(rows[:, 1:5].max())))
    ax.grid(alpha=0.25)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], fontsize=8.5, loc="center right")
    ax.set_title(f"(b) CFG for class {pos}: s sharpens the classifier", fontsize=11)

    ax = fig.add_subplot(gs[0, 2])
    scales = list(grids)
    g = make_grid(((torch.cat([grids[v] for v in scales]).float() + 1) / 2).clamp(0, 1),
                  nrow=len(grids[scales[0]]), padding=1, pad_value=1.0)
    ax.imshow(g.permute(1, 2, 0).numpy(), interpolation="nearest")
    cell = grids[scales[0]].shape[-2] + 1
    ax.set_yticks([1 + cell * (i + 0.5) for i in range(len(scales))], [f"s = {v:g}" for v in scales])
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_title("(c) the same seeds at each s (CFG)", fontsize=11)
    _save(fig, path)


def plot_negative(path: str, *,
                  confusion: np.ndarray,               # (K, K) unguided counts: asked for row, judged column
                  pos: int, neg: int,
                  rows: dict[str, dict],               # set name -> metrics.pair_row's values, images (the same seeds)
                  class_names: Sequence[str]) -> None:
    """Lesson 05: the confusion matrix that picks the pair; per set the share judged neg, mean p_judge(neg | x)
    and FID; in every set, the 10 seeds that look most like neg in the first (unguided) set."""
    from torchvision.utils import make_grid

    show = np.argsort(-rows[next(iter(rows))]["p_each"], kind="stable")[:10]

    fig = plt.figure(figsize=(18, 5.4))
    gs = fig.add_gridspec(1, 4, width_ratios=[1, 1.1, 1.1, 1.4], wspace=0.35)
    ax = fig.add_subplot(gs[0, 0])
    off = np.where(np.eye(len(confusion), dtype=bool), np.nan, confusion)
    im = ax.imshow(off, cmap="Reds")
    for (i, j), v in np.ndenumerate(confusion):
        if i != j and v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    fontweight="bold" if (i, j) == (pos, neg) else "normal")
    ax.add_patch(plt.Rectangle((neg - 0.5, pos - 0.5), 1, 1, fill=False, ec="black", lw=2))
    ax.set_xticks(range(len(class_names)), class_names)
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("class the judge sees")
    ax.set_ylabel("class asked for (s = 1)")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_title(f"(a) unguided confusions (counts off the\ndiagonal); the largest picks {pos} -> {neg}", fontsize=11)

    names = list(rows)
    colors = [NONE_C if n.startswith("s = 1") else CFG_C if n.startswith("CFG") else NEG_C for n in names]
    x = np.arange(len(names))
    ax = fig.add_subplot(gs[0, 1])
    ax.bar(x, [rows[n]["p_neg"] for n in names], yerr=[rows[n]["p_neg_se"] for n in names], color=colors,
           capsize=3, alpha=0.85)
    for i, n in enumerate(names):
        ax.text(i, rows[n]["p_neg"], f"{rows[n]['rate']:.1%}\njudged {neg}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=9)
    ax.set_ylabel(f"mean p_judge({neg} | x)  (+- 1 s.e.)")
    ax.set_title(f"(b) how much a sample of {pos} looks like {neg}", fontsize=11)
    ax.grid(axis="y", alpha=0.25)
    ax = fig.add_subplot(gs[0, 2])
    ax.bar(x, [rows[n]["fid"] for n in names], color=colors, alpha=0.85)
    for i, n in enumerate(names):
        ax.text(i, rows[n]["fid"], f"acc {rows[n]['acc']:.0%}\ndiv {rows[n]['div']:.2f}", ha="center",
                va="bottom", fontsize=8)
    ax.set_xticks(x, names, rotation=25, ha="right", fontsize=9)
    ax.set_ylabel(f"classifier-FID against real {pos}s (lower = closer)")
    ax.set_title("(c) what it costs: quality of the samples", fontsize=11)
    ax.grid(axis="y", alpha=0.25)
    ax = fig.add_subplot(gs[0, 3])
    g = make_grid(((torch.cat([rows[n]["images"][show] for n in names]).float() + 1) / 2).clamp(0, 1),
                  nrow=len(show), padding=1, pad_value=1.0)
    ax.imshow(g.permute(1, 2, 0).numpy(), interpolation="nearest")
    cell = rows[names[0]]["images"].shape[-2] + 1
    ax.set_yticks([1 + cell * (i + 0.5) for i in range(len(names))], names, fontsize=9)
    ax.set_xticks([])
    ax.tick_params(length=0)
    ax.set_title(f"(d) the 10 seeds most like {neg} at s = 1, in every set", fontsize=11)
    _save(fig, path)


def plot_references(path: str, *,
                    mse: dict[str, float],                # branch -> E||eps_hat - eps||^2, the first is pos
                    results: dict[str, dict],             # set -> metrics.evaluate's row
                    grids: dict[str, torch.Tensor],       # set -> (K * per_class, C, H, W) samples
                    per_class: int) -> None:
    """Lesson 06: how much worse each reference predicts, and what guiding away from it does."""
    from torchvision.utils import make_grid

    fig = plt.figure(figsize=(18, 5.6))
    gs = fig.add_gridspec(1, 2 + len(grids), width_ratios=[1.1, 1.4] + [0.55] * len(grids), wspace=0.3)
    colors = [NONE_C, CFG_C, NEG_C, AUTO_C]
    ax = fig.add_subplot(gs[0, 0])
    names = list(mse)
    base = mse[names[0]]
    ax.barh(range(len(names)), [mse[n] / base for n in names], color=["black"] + colors[1:], alpha=0.85)
    for i, n in enumerate(names):
        ax.text(mse[n] / base, i, f" {mse[n] / base:.2f}x", va="center", fontsize=9)
    ax.set_yticks(range(len(names)), [f"eps({n})" for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("E||eps_hat - eps||^2 on held-out images, relative to pos")
    ax.set_title("(a) each reference is a worse prediction", fontsize=11)
    ax = fig.add_subplot(gs[0, 1])
    sets = list(results)
    keys = [("accuracy", "accuracy", 1), ("neg_rate", "judged c + 1", 1), ("diversity", "diversity / real", 1),
            ("fid_class_mean", "FID/class / 10", 0.1)]
    width = 0.8 / len(sets)
    for i, (name, color) in enumerate(zip(sets, colors)):
        vals = [results[name][k] * f for k, _, f in keys]
        ax.bar(np.arange(len(keys)) + (i - (len(sets) - 1) / 2) * width, vals, width, color=color, alpha=0.85,
               label=name)
    ax.set_xticks(range(len(keys)), [label for _, label, _ in keys], rotation=20, ha="right", fontsize=9)
    ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=0.25)
    ax.set_title("(b) what guiding away from it does (judge)", fontsize=11)
    for j, (name, x) in enumerate(grids.items()):
        ax = fig.add_subplot(gs[0, 2 + j])
        g = make_grid(((x.float() + 1) / 2).clamp(0, 1), nrow=per_class, padding=1, pad_value=1.0)
        ax.imshow(g.permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(name.replace(", s", "\ns"), fontsize=10, color=colors[j])
    _save(fig, path)
