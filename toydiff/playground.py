"""What the 2D playground's figures and tables compute: samples, fields, trajectories and their exact references.

Everything runs through the library's own path: `guidance.guide` builds the guided denoiser, `pipeline.trajectory`
samples it, for the exact model (`toy2d.ExactDenoiser`) and a learned one (`mlp.MLP`) alike.
Guidance convention: eps = eps_ref + s (eps_pos - eps_ref); s = 1 is none; Ho & Salimans' w = s - 1.

Measurements (the N and the sampler are stated with every number):
    component mass   mean over samples of the exact responsibilities p(m | x) (M,): unbiased, E_{x ~ p}[p(m|x)] is
                     exactly pi_m, so the s = 1 set on prior quotas must give pi up to sampling noise
    distance         energy distance (`toy2d.energy_distance`) to an exact sample of the target of the same N,
                     beside its noise floor: the distance between two independent exact samples of that N
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .guidance import Guided, guide
from .runtime import threads
from .pipeline import quota_labels, trajectory
from .sampling import Sampler
from .schedule import NoiseSchedule
from .toy2d import Grid, Mixture, energy_distance, guided_log_density

SAMPLER = Sampler("ddpm", 100)                # ancestral, 100 respaced steps, x0_hat clipped to [-1, 1] as for images
PATHS = Sampler("ddim", 50)                   # deterministic DDIM for drawn paths: smooth, one path per seed
N = 2000                                      # samples per measured set
DYNAMIC_MAX = 20.0                            # the ceiling of posterior-aware guidance's scale s_t
GRID = Grid()                                 # exact targets: 301 x 301 cells over [-1.5, 1.5]^2
BACKDROP = Grid(1.6, 161)                     # what the figures draw behind the data


@torch.no_grad()
def run(guided: Guided, schedule: NoiseSchedule, *, seeds: Sequence[int],
        sampler: Sampler = SAMPLER) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Every step of one chain: x (S + 1, B, 2) from x_T to x_0, x0_hat (S, B, 2), and the S timesteps.
    Unclamped: unlike pixels, points may leave [-1, 1]."""
    with threads(1):                          # 2D batches are too small to split across threads
        steps = list(trajectory(guided, schedule, sampler, seeds=seeds))
    x_T = _x_T(seeds, guided)
    return (torch.stack([x_T] + [s.x.double() for s in steps]), torch.stack([s.x0.double() for s in steps]),
            [s.t for s in steps])


def _x_T(seeds: Sequence[int], guided: Guided) -> torch.Tensor:
    """x_T as the samplers draw it: the first normal draw of each seed's generator."""
    from .sampling import randn, seeded_generators
    return randn((len(seeds), *guided.model.cfg.data_shape), seeded_generators(seeds), "cpu").double()


def sample(guided: Guided, schedule: NoiseSchedule, *, seeds: Sequence[int], sampler: Sampler = SAMPLER
           ) -> torch.Tensor:
    """The final samples x_0 (B, 2) float64 of `run`."""
    with torch.no_grad(), threads(1):
        step = None
        for step in trajectory(guided, schedule, sampler, seeds=seeds):
            pass
    return step.x.double().cpu()


@torch.no_grad()
def field(model: torch.nn.Module, schedule: NoiseSchedule, points: torch.Tensor, t: int, *, pos: int,
          neg: int) -> dict[str, torch.Tensor]:
    """x0_hat at x_t = `points` (P, 2) and timestep t for the labels null, pos and neg, through one batched
    forward (`Guided.branches`), and the two pushes guidance adds (per unit of s - 1):
        cfg  = x0_hat(pos) - x0_hat(null)      negative = x0_hat(pos) - x0_hat(neg)"""
    K = model.cfg.num_classes
    x = points.float()
    g = guide(model, torch.full((len(x),), pos), scale=2.0, negatives=[(neg, 1.0)])
    tt = torch.full((len(x),), t)
    with threads(1):
        eps_pos, eps_neg, eps_null = g.branches(x, tt, extra=[torch.full((len(x),), K)])
    abar = float(schedule.alpha_bar[t])
    x0 = {name: ((x - (1 - abar) ** 0.5 * e) / abar ** 0.5).double()
          for name, e in (("pos", eps_pos), ("neg", eps_neg), ("null", eps_null))}
    return {**x0, "cfg": x0["pos"] - x0["null"], "negative": x0["pos"] - x0["neg"]}


def noise_levels(schedule: NoiseSchedule, abars: Sequence[float] = (0.02, 0.3, 0.9)) -> list[int]:
    """The timesteps whose abar_t is nearest each of `abars` (high, middle and low noise)."""
    return [int((schedule.alpha_bar - a).abs().argmin()) for a in abars]


# ---------------------------------------------------------------- the measured sets and their exact targets

@dataclass(frozen=True)
class Mode:
    """One guided set: labels pos (a class, or None = null), reference (None = null, or a class k), scale s,
    posterior-aware or not; and the exact target it is compared with (`target`: its log density on points)."""
    name: str
    pos: int | None
    neg: int | None
    scale: float
    dynamic: bool = False
    quotas: bool = False          # labels drawn in prior quotas (without `neg`), each at s = 1: the exact answer

    def guided(self, model: torch.nn.Module, mix: Mixture, n: int) -> Guided:
        K = mix.num_classes
        if self.quotas:
            labels = quota_labels(mix.prior, n, removed=[self.neg] if self.neg is not None else [])
            return guide(model, labels, scale=1.0)
        labels = torch.full((n,), K if self.pos is None else self.pos)
        negatives = [(self.neg, 1.0)] if self.neg is not None else []
        if self.dynamic:
            return guide(model, labels, scale=DYNAMIC_MAX, negatives=negatives, dynamic=1.0)
        return guide(model, labels, scale=self.scale, negatives=negatives)

    def target(self, mix: Mixture, x: torch.Tensor) -> torch.Tensor:
        """log density (unnormalised) of what this set is meant to sample."""
        if self.quotas and self.neg is None:
            return mix.log_density(x)                                        # p(x)
        if self.pos is None and self.neg is not None:                        # every removal: "anything but k"
            return mix.log_not(x, self.neg)                                  # p(x | not k)
        return guided_log_density(mix, x, pos=self.pos, ref=self.neg, scale=self.scale)

    @property
    def target_name(self) -> str:
        if self.quotas and self.neg is None:
            return "p(x)"
        if self.pos is None:
            return f"p(x | not {self.neg})"
        pos = "x" if self.pos is None else f"x | {self.pos}"
        ref = "x" if self.neg is None else f"x | {self.neg}"
        return f"p({pos})^{self.scale:g} p({ref})^{1 - self.scale:g}" if self.scale != 1 else f"p({pos})"


def modes(*, pos: int, neg: int, scale: float) -> list[Mode]:
    """The measured sets: s = 1 over all classes (prior quotas), s = 1 for pos, CFG and negative at s; removal of
    `neg` static at s, posterior-aware (lambda = 1, exact scores: exact removal) and exact (quotas without neg)."""
    return [Mode("s = 1, all classes", None, None, 1.0, quotas=True),
            Mode(f"s = 1, class {pos}", pos, None, 1.0),
            Mode(f"CFG s = {scale:g}", pos, None, scale),
            Mode(f"negative s = {scale:g}", pos, neg, scale),
            Mode(f"removal static s = {scale:g}", None, neg, scale),
            Mode("removal posterior-aware", None, neg, scale, dynamic=True),
            Mode("removal exact", None, neg, 1.0, quotas=True)]


def target_prob(mode: Mode, mix: Mixture, grid: Grid = GRID) -> torch.Tensor:
    """(n^2,) the mode's exact target as cell probabilities of `grid` (`Grid.sample` draws from it)."""
    with threads(1):
        return grid.normalise(mode.target(mix, grid.points))


def component_mass(mix: Mixture, x: torch.Tensor) -> torch.Tensor:
    """(M,) mean of the exact responsibilities p(m | x) over the samples x (N, 2)."""
    return mix.component_posterior(x).mean(0)


def measure(models: dict[str, torch.nn.Module], schedule: NoiseSchedule, mix: Mixture, *, pos: int, neg: int,
            scale: float, n: int = N, seed: int = 0) -> list[dict]:
    """One row per mode: target, its component mass, the noise floor and, per model, the component mass and the
    energy distance of its n samples (seeds seed .. seed + n - 1) to an exact target sample of n."""
    rows, seeds = [], list(range(seed, seed + n))
    for mode in modes(pos=pos, neg=neg, scale=scale):
        prob = target_prob(mode, mix)
        ref = GRID.sample(prob, n, torch.Generator().manual_seed(10_000 + seed))
        floor = energy_distance(ref, GRID.sample(prob, n, torch.Generator().manual_seed(20_000 + seed)))
        row = {"mode": mode.name, "target": mode.target_name, "target_mass": prob @ mix.component_posterior(GRID.points),
               "floor": floor, "reference": ref, "samples": {}}
        for name, model in models.items():
            x = sample(mode.guided(model, mix, n), schedule, seeds=seeds)
            row["samples"][name] = x
            row[f"{name}_mass"] = component_mass(mix, x)
            row[f"{name}_distance"] = energy_distance(x, ref)
        rows.append(row)
    return rows


# ---------------------------------------------------------------- figures (computed here, drawn by viz2d)

def backdrop(mix: Mixture, grid: Grid = BACKDROP) -> dict:
    """What every 2D figure draws behind its data: p(x | c) per class on a grid (K, n, n), mu and mu_c."""
    with threads(1):
        dens = torch.stack([mix.log_density(grid.points, c).exp().reshape(grid.n, grid.n)
                            for c in range(mix.num_classes)])
    return {"axis": grid.axis, "density": dens, "mu": mix.mean(), "mu_c": mix.class_means()}


def field_figure(path: str, models: dict[str, torch.nn.Module], schedule: NoiseSchedule, mix: Mixture, *,
                 pos: int, neg: int, scale: float, side: int = 6) -> list[dict]:
    """The field at three noise levels (`noise_levels`), exact beside learned. Returns per level t, abar_t and
    the mean distance of the exact x0_hat(null) to mu and of x0_hat(pos) to mu_pos over the drawn points."""
    axis = torch.linspace(-1.0, 1.0, side, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)                          # (side^2, 2) x_t
    rows, stats = [], []
    for t in noise_levels(schedule):
        f = {name: field(m, schedule, points, t, pos=pos, neg=neg) for name, m in models.items()}
        abar = float(schedule.alpha_bar[t])
        rows.append((f"t = {t} (abar {abar:.2f})", f["exact"], f["learned"]))
        stats.append({"t": t, "abar": abar,
                      "null_to_mu": float((f["exact"]["null"] - mix.mean()).norm(dim=1).mean()),
                      "pos_to_mu_pos": float((f["exact"]["pos"] - mix.class_means()[pos]).norm(dim=1).mean()),
                      "learned_vs_exact": float((f["learned"]["pos"] - f["exact"]["pos"]).norm(dim=1).mean())})
    names = mix.class_names
    from .viz2d import plot_field
    plot_field(path, points=points, rows=rows, backdrop=backdrop(mix), pos=names[pos], neg=names[neg], scale=scale,
               names=names)
    return stats


def guided_figure(path: str, models: dict[str, torch.nn.Module], schedule: NoiseSchedule, mix: Mixture, *,
                  pos: int, neg: int, scales: Sequence[float] = (1, 2, 3, 5), n: int = 600,
                  seed: int = 0) -> list[dict]:
    """CFG (row 1) and negative guidance away from `neg` (row 2) at each s, samples of both models over the exact
    tilted target. Returns per panel the energy distances (exact, learned) to the target at n, and its floor."""
    rows, out = [], []
    for kind, ref, cmap in (("CFG", None, "Blues"), (f"negative {mix.class_names[neg]}", neg, "Reds")):
        panels = []
        for s in scales:
            mode = Mode(kind, pos, ref, float(s))
            prob = target_prob(mode, mix)
            x = {name: sample(mode.guided(m, mix, n), schedule, seeds=range(seed, seed + n))
                 for name, m in models.items()}
            target = GRID.sample(prob, n, torch.Generator().manual_seed(30_000 + seed))
            d = {name: energy_distance(v, target) for name, v in x.items()}
            floor = energy_distance(target, GRID.sample(prob, n, torch.Generator().manual_seed(40_000 + seed)))
            out.append({"mode": kind, "scale": float(s), **d, "floor": floor})
            panels.append({"title": f"s = {s:g}\nED exact {d['exact']:.4f}, learned {d['learned']:.4f} "
                                    f"(floor {floor:.4f})",
                           "prob": _on(prob, BACKDROP), "exact": x["exact"], "learned": x["learned"]})
        rows.append((kind, cmap, panels))
    from .viz2d import plot_guided
    plot_guided(path, rows=rows, backdrop=backdrop(mix), names=mix.class_names)
    return out


def _on(prob: torch.Tensor, grid: Grid) -> torch.Tensor:
    """GRID's cell probabilities resampled (nearest cell) onto `grid` (n, n), for drawing."""
    idx = ((grid.points + GRID.radius) / GRID.cell).round().long().clamp(0, GRID.n - 1)
    inside = (grid.points.abs() <= GRID.radius).all(1)
    vals = prob.reshape(GRID.n, GRID.n)[idx[:, 1], idx[:, 0]] * inside
    return vals.reshape(grid.n, grid.n)


def trajectories_figure(path: str, models: dict[str, torch.nn.Module], schedule: NoiseSchedule, mix: Mixture, *,
                        pos: int, neg: int, scale: float, seeds: Sequence[int] = range(10)) -> None:
    """x_t from x_T to x_0 for s = 1, CFG and negative guidance on the same seeds (deterministic DDIM, `PATHS`),
    exact solid, learned dashed."""
    from .viz2d import CFG_C, CLASS_C, NEG_C, plot_trajectories
    panels = []
    for title, color, mode in ((f"s = 1, class {mix.class_names[pos]} ({PATHS.label})", CLASS_C[pos], Mode("", pos, None, 1.0)),
                               (f"CFG s = {scale:g}", CFG_C, Mode("", pos, None, scale)),
                               (f"negative {mix.class_names[neg]}, s = {scale:g}", NEG_C, Mode("", pos, neg, scale))):
        xs = [run(mode.guided(m, mix, len(seeds)), schedule, seeds=seeds, sampler=PATHS)[0] for m in models.values()]
        panels.append((title, color, *xs))
    plot_trajectories(path, panels=panels, backdrop=backdrop(mix), names=mix.class_names)


def removal_figure(path: str, rows: list[dict], mix: Mixture, *, neg: int) -> dict[str, list[float]]:
    """Removal of `neg` from the rows of `measure`: static, posterior-aware, exact over p(x | not neg); returns
    the class masses (mean exact p(c | x)) of the target and of each set (exact model), as drawn."""
    from .viz2d import plot_removal
    removal = [r for r in rows if r["mode"].startswith("removal")]
    target = Mode("", None, neg, 1.0)
    masses = {"target p(x | not k)": (target_prob(target, mix) @ mix.class_posterior(GRID.points)).tolist()}
    for r in removal:
        masses[r["mode"].replace("removal ", "")] = mix.class_posterior(r["samples"]["exact"]).mean(0).tolist()
    panels = [{"title": f"{r['mode']}\nED exact {r['exact_distance']:.4f}, learned {r['learned_distance']:.4f}",
               "exact": r["samples"]["exact"], "learned": r["samples"]["learned"]} for r in removal]
    plot_removal(path, panels=panels, target=_on(target_prob(target, mix), BACKDROP), masses=masses,
                 backdrop=backdrop(mix), names=mix.class_names, k=mix.class_names[neg])
    return masses


def animation(path: str, model: torch.nn.Module, schedule: NoiseSchedule, mix: Mixture, *, scale: float,
              per_class: int = 60, frames: int = 25, side: int = 9) -> None:
    """Particles of every class under CFG at `scale` (deterministic DDIM, `PATHS`) and the field x_t -> x0_hat(null)
    from t = T to 0 (GIF)."""
    from .pipeline import class_rows
    from .viz2d import animate
    labels = class_rows(mix.num_classes, per_class)
    x, x0, ts = run(guide(model, labels, scale=scale), schedule, seeds=range(len(labels)), sampler=PATHS)
    axis = torch.linspace(-1.4, 1.4, side, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    picks = sorted({round(i * (len(ts) - 1) / (frames - 1)) for i in range(frames)})
    out = []
    for i in picks:
        f = field(model, schedule, points, ts[i], pos=0, neg=1)
        out.append({"t": ts[i], "abar": float(schedule.alpha_bar[ts[i]]), "x": x[i], "x0_null": f["null"]})
    out.append({"t": 0, "abar": 1.0, "x": x[-1], "x0_null": points})     # the end: x_0, no field left
    animate(path, frames=out, points=points, labels=labels, backdrop=backdrop(mix), names=mix.class_names,
            title=f"CFG s = {scale:g} ({PATHS.label}): particles x_t, field x_t -> x0_hat(null)")
