"""The two animations of figures/ (GIF, written through Pillow, which matplotlib already depends on).

Drawn with viz.py's helpers and conventions (colours, the PCA backdrop, arrows that are never dropped). Every frame
of a GIF shares one palette, so a colour means the same class or method in every frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from .files import atomic_write
from .viz import CFG_C, NEG_C, NONE_C, _arrow, _plane, plt

GIF_DPI = 100
GIF_COLORS = 255                     # one shared palette (GIF holds at most 256 entries)
PUSH_MAX = 0.35                      # plane.gif: a push arrow is drawn at most this fraction of the view's height


def _save_gif(fig, draw: Callable[[int], None], n_frames: int, path: str, *, max_frames: int = 26,
              ms_per_frame: int = 200, hold: int = 10) -> None:
    """Render `draw(i)` on `fig` for at most `max_frames` evenly spaced i in 0..n_frames-1 (the first and the last
    among them), hold the last frame, and write one looping GIF atomically.

    One palette for every frame: it is fitted on all the rendered frames together (median cut), and each frame is
    mapped onto it without dithering, so one RGB colour gets one palette entry in every frame."""
    from PIL import Image

    rgbs = []
    stride = -(-n_frames // max_frames)
    try:
        for i in sorted({*range(0, n_frames, stride), n_frames - 1}):
            draw(i)
            fig.canvas.draw()
            rgbs.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    finally:
        plt.close(fig)
    palette = Image.fromarray(np.concatenate(rgbs, axis=0)).quantize(
        colors=GIF_COLORS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    frames = [Image.fromarray(rgb).quantize(palette=palette, dither=Image.Dither.NONE) for rgb in rgbs]
    frames += [frames[-1]] * hold
    atomic_write(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                duration=ms_per_frame, loop=0, optimize=False))


def _step_text(k: int, ts: Sequence[int], alpha_bar: Sequence[float], n_steps: int) -> str:
    """'sampling step 3 / 50, t = 958, abar_t = 0.0041' for frame k (the kept steps are the last len(ts))."""
    return (f"sampling step {n_steps - len(ts) + k + 1} / {n_steps},  t = {ts[k]},  "
            f"$\\bar\\alpha_t$ = {alpha_bar[k]:.2g}")


def animate_denoising(path: str, *,
                      sets: Sequence[tuple[str, torch.Tensor, torch.Tensor]],  # (title, x_t (S, N, C, H, W),
                                                                              #  x0_hat (S, N, C, H, W))
                      ts: Sequence[int],                     # (S,) the timestep of each frame
                      alpha_bar: Sequence[float],            # (S,) abar_t of each frame
                      n_steps: int,                          # sampling steps in all (frames are the last S)
                      nrow: int,                             # images per row
                      row_names: Sequence[str],              # the label of each row (its class)
                      row_means: torch.Tensor,               # (rows, C, H, W): mu_c of each row's class, shown
                      note: str) -> None:                    # second title line: what is shown, what skipped
    """Per set two panels side by side, x_t and x0_hat, one frame per sampling step (same seeds in every set);
    at the right, fixed, the class mean mu_c of each row: what x0_hat(c) approaches at high noise."""
    from torchvision.utils import make_grid

    def grid(x: torch.Tensor, per_row: int = nrow) -> np.ndarray:
        g = make_grid(((x.float() + 1) / 2).clamp(0, 1), nrow=per_row, padding=1, pad_value=1.0)
        return g.permute(1, 2, 0).numpy()

    first, means = grid(sets[0][1][0]), grid(row_means.cpu(), per_row=1)
    panel = 1.5                                                            # inches per panel's width
    widths = [first.shape[1]] * (2 * len(sets)) + [means.shape[1]]
    fig, axes = plt.subplots(1, len(widths), squeeze=False, dpi=GIF_DPI, gridspec_kw=dict(width_ratios=widths),
                             figsize=(panel * sum(widths) / first.shape[1] + 1.0,
                                      panel * first.shape[0] / first.shape[1] + 1.3))
    shown = []
    for j, (title, _, _) in enumerate(sets):
        for i, label in enumerate(("$x_t$", "$\\hat x_0$")):
            ax = axes[0, 2 * j + i]
            shown.append(ax.imshow(first, cmap="gray", vmin=0, vmax=1, interpolation="nearest"))
            ax.set_title(f"{title}\n{label}", fontsize=10)
    axes[0, -1].imshow(means, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    axes[0, -1].set_title("class\nmean $\\mu_c$", fontsize=10)
    for ax in axes[0]:
        ax.set_xticks([])
        ax.set_yticks([])
    cell = sets[0][1].shape[-2] + 1                                        # make_grid padding = 1
    axes[0, 0].set_yticks([1 + cell * (i + 0.5) for i in range(len(row_names))], row_names, fontsize=10)
    axes[0, 0].tick_params(length=0)
    head = fig.suptitle("", fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.86))

    def draw(k: int) -> None:
        for j, (_, xs, x0s) in enumerate(sets):
            shown[2 * j].set_data(grid(xs[k]))
            shown[2 * j + 1].set_data(grid(x0s[k]))
        head.set_text(f"{_step_text(k, ts, alpha_bar, n_steps)}\n{note}")
    _save_gif(fig, draw, len(ts), path)


def animate_plane(path: str, *,
                  data2d: np.ndarray, labels: np.ndarray, means2d: np.ndarray, explained: np.ndarray,
                  class_names: Sequence[str], pos: int, neg: int,
                  clouds: Sequence[tuple[str, np.ndarray, np.ndarray | None]],   # (name, x0_hat on the plane
                  #   (S, M, 2), the push (s - 1) d on the plane, mean over the cloud (S, 2) or None)
                  ts: Sequence[int], alpha_bar: Sequence[float], n_steps: int,  # as `animate_denoising`
                  note: str) -> None:
    """The sample clouds' x0_hat moving on the PCA plane step by step; an arrow from each guided cloud's mean shows
    the current push (s - 1)(x0_hat(pos) - x0_hat(ref)) that guidance adds to the unguided prediction, drawn at
    every step: one longer than PUSH_MAX of the view is drawn that long with its true length written at its head.
    Faint arrows: the mean-to-mean directions mu_pos - mu (CFG) and mu_pos - mu_neg (negative), for comparison."""
    fig, ax = plt.subplots(figsize=(12, 7.6), dpi=GIF_DPI)
    fig.subplots_adjust(left=0.07, right=0.62, bottom=0.08, top=0.86)
    everything = np.concatenate([data2d] + [c[1].reshape(-1, 2) for c in clouds])
    lo, hi = np.percentile(everything, [0.5, 99.5], axis=0)
    pad = 0.08 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    cap = PUSH_MAX * (hi - lo)[1]
    colors = (NONE_C, CFG_C, NEG_C)
    mu, mp, mn = means2d[-1], means2d[pos], means2d[neg]
    p_name, n_name = class_names[pos], class_names[neg]

    def draw(k: int) -> None:
        ax.clear()
        _plane(ax, data2d, labels, means2d, class_names, explained, highlight=(pos, neg))
        ax.set_aspect("equal", adjustable="box")                            # fixed limits: the box adapts
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        _arrow(ax, mu, mp, CFG_C, f"$\\mu_{{{p_name}}} - \\mu$: CFG's mean-to-mean direction", lw=1.6, alpha=0.35)
        _arrow(ax, mn, mp, NEG_C, f"$\\mu_{{{p_name}}} - \\mu_{{{n_name}}}$: the negative's mean-to-mean "
               "direction", lw=1.6, alpha=0.35)
        for (name, pts, push), color in zip(clouds, colors):
            ax.scatter(pts[k, :, 0], pts[k, :, 1], s=12, color=color, alpha=0.5, lw=0, zorder=3,
                       label=f"$\\hat x_0$, {name}")
            if push is not None:
                _arrow(ax, pts[k].mean(0), pts[k].mean(0) + push[k], color, None, max_length=cap, lw=2.6)
        ax.plot([], [], color="black", lw=2.6,
                label=f"push $(s - 1)\\,d$ from each guided cloud's mean,\n$d = \\hat x_0(pos) - \\hat x_0(ref)$ "
                      f"averaged over the cloud;\nan arrow longer than {PUSH_MAX:.0%} of the view's height\n"
                      "is drawn that long, its true length beside it")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=10, frameon=False)
        ax.set_title(f"class {p_name} on the PCA plane of the training images: "
                     f"{_step_text(k, ts, alpha_bar, n_steps)}\n{note}", fontsize=11, loc="left")
    _save_gif(fig, draw, len(ts), path)
