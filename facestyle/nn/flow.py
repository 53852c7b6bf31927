"""Continuous normalizing flow over a region group's style codes (paper section 3.5, eq. 7-8).

The flow is an ODE ``dx/dt = f(x, t)`` on the group's normalised codes x (dimension K x D), with f a stack
of FFJORD's concat-squash layers. The codes are standardised per coordinate by the bank's mean and std
(StyleFlow's moving batch norm, with the whole bank's statistics), or whitened by its covariance with
``normalization="whiten"``; the statistics are buffers of the checkpoint. Its time-T map is invertible,
whatever f is:

    z = x(0) + int_0^T f(x(t), t) dt,     x(0) = s_g        (eq. 7, code -> z: :meth:`forward`)
    s'_g = z'(T) + int_T^0 f(z'(t), t) dt,  z'(T) = z'      (eq. 8, z -> code: :meth:`reverse`)

with z ~ N(0, I). Two objectives train the same network (see :mod:`facestyle.train.flow`):

- ``maximum-likelihood`` (FFJORD): log p(s) = log N(z; 0, I) + int_0^T tr(df/dx) dt (+ the
  normalisation's log-determinant), the trace by Hutchinson's estimator ``e^T (df/dx) e`` with one
  Rademacher or Gaussian probe per solve (or exactly, for evaluation), solved with dopri5;
- ``flow-matching`` (conditional flow matching with straight paths, i.e. rectified flow): regress f on
  the velocity of the straight line from a code to a Gaussian sample, ``x_u = (1 - u) x + u e``,
  ``f(x_u, uT) ~ (e - x) / T``: no solve in training, so a step costs one pass of the network.
  The conditional paths are straight, the learned (marginal) field is not, so a flow-matching flow
  needs about as many solver steps as a maximum-likelihood flow of the same likelihood; what it saves
  is training time (``benchmarks/style_speed.py``, figures in the README).

The number of steps a flow needs grows as it fits its bank more tightly, whichever objective trained it,
so no fixed default is safe: at the end of training the flow's default solver is set to the cheapest
that returns bank codes through code -> z -> code within 1e-3 (:meth:`ContinuousNormalizingFlow.
calibrate_solver`); before that, "auto" is dopri5 (maximum likelihood) or rk4 x8 (flow matching).

Solves use torchdiffeq's ``odeint`` (method, atol/rtol, fixed step count and a cap on the number of steps
configurable through :class:`Solver`); every call of f is counted (:attr:`ContinuousNormalizingFlow.nfe`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import Tensor, nn
from torchdiffeq import odeint

from ..checkpoint import Pretrained
from ..config import MAX_DEPTH, MAX_WIDTH, check_size
from ..errors import FacestyleError, InputError
from .mapping import CodeStandardizer, CodeWhitener

__all__ = ["FlowConfig", "FLOW_PRESETS", "Solver", "SolverError", "ConcatSquashLinear", "ODEFunction",
           "ContinuousNormalizingFlow", "ADAPTIVE_METHODS", "FIXED_METHODS"]

Objective = Literal["maximum-likelihood", "flow-matching"]
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")
FIXED_METHODS = ("euler", "midpoint", "heun3", "rk4")


class SolverError(FacestyleError):
    """The ODE solver needed more steps than allowed (a stiff flow, or a tolerance too tight)."""


@dataclass(frozen=True)
class Solver:
    """How to integrate the flow's ODE.

    ``method``: an adaptive torchdiffeq method (``dopri5``...) with tolerances ``atol``/``rtol``, or a
    fixed-grid one (``euler``, ``midpoint``, ``heun3``, ``rk4``) with ``steps`` equal steps per solve.
    ``max_steps`` caps an adaptive solve's steps (a :class:`SolverError` beyond).
    """

    method: str = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    steps: int = 8
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        if self.method not in ADAPTIVE_METHODS + FIXED_METHODS:
            raise InputError(f"unknown ODE solver {self.method!r}; choose one of: "
                             f"{', '.join(ADAPTIVE_METHODS + FIXED_METHODS)}")
        if self.atol <= 0 or self.rtol <= 0:
            raise InputError(f"solver tolerances must be positive, got atol={self.atol}, rtol={self.rtol}")
        if self.steps < 1 or self.max_steps < 1:
            raise InputError(f"solver steps must be positive, got steps={self.steps}, max_steps={self.max_steps}")
        check_size("solver steps", self.steps, 1, 100_000)
        check_size("solver max_steps", self.max_steps, 1, 10_000_000)

    @property
    def adaptive(self) -> bool:
        return self.method in ADAPTIVE_METHODS

    def describe(self) -> str:
        return (f"{self.method} atol={self.atol:g} rtol={self.rtol:g}" if self.adaptive
                else f"{self.method} x{self.steps}")


@dataclass(frozen=True)
class FlowConfig:
    """Everything that rebuilds a group's flow: the group (from the bank), the ODE network, the
    objective it was trained with, and the default solver for :meth:`~ContinuousNormalizingFlow.forward`
    and :meth:`~ContinuousNormalizingFlow.reverse`."""

    label_set: str = "celebamask-hq"
    region: str = "skin"
    classes: tuple[int, ...] = (1, 2)
    style_dim: int = 512
    hidden_dim: int = 512
    num_layers: int = 4  # concat-squash layers, the last one to the code dimension
    activation: Literal["softplus", "tanh"] = "softplus"
    objective: Objective = "maximum-likelihood"
    normalization: Literal["standardize", "whiten"] = "standardize"  # by the bank's statistics
    end_time: float = 1.0  # T (FFJORD learns it: train_end_time)
    train_end_time: bool = False
    # default solver for inference: "auto" is dopri5 for maximum likelihood, rk4 (``steps`` steps) for
    # flow matching; training replaces "auto" by the cheapest solver that passes the round-trip check
    # (:meth:`ContinuousNormalizingFlow.calibrate_solver`)
    method: str = "auto"
    atol: float = 1e-5
    rtol: float = 1e-5
    steps: int = 8
    max_steps: int = 10_000

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(int(c) for c in self.classes))
        if not self.classes or len(set(self.classes)) != len(self.classes):
            raise InputError(f"flow config: classes must be distinct and not empty, got {self.classes}")
        if self.style_dim < 1 or self.hidden_dim < 1 or self.num_layers < 1:
            raise InputError("flow config: style_dim, hidden_dim and num_layers must be positive")
        check_size("flow config: style_dim", self.style_dim, 1, MAX_WIDTH)
        check_size("flow config: hidden_dim", self.hidden_dim, 1, MAX_WIDTH)
        check_size("flow config: num_layers", self.num_layers, 1, MAX_DEPTH)
        for c in self.classes:
            check_size("flow config: classes", c, 0, 255)
        if self.activation not in ("softplus", "tanh"):
            raise InputError(f"flow config: activation must be softplus or tanh, got {self.activation!r}")
        if self.objective not in ("maximum-likelihood", "flow-matching"):
            raise InputError(f"flow config: objective must be maximum-likelihood or flow-matching, "
                             f"got {self.objective!r}")
        if self.normalization not in ("whiten", "standardize"):
            raise InputError(f"flow config: normalization must be whiten or standardize, got {self.normalization!r}")
        if not self.end_time > 0:
            raise InputError(f"flow config: end_time must be positive, got {self.end_time}")
        _ = self.solver  # validates the solver fields

    @property
    def code_dim(self) -> int:
        return len(self.classes) * self.style_dim

    @property
    def solver(self) -> Solver:
        method = self.method
        if method == "auto":
            method = "dopri5" if self.objective == "maximum-likelihood" else "rk4"
        return Solver(method, self.atol, self.rtol, self.steps, self.max_steps)


# Architecture presets; the bank fills in label_set, region, classes and style_dim, the trainer the
# objective.
FLOW_PRESETS: dict[str, FlowConfig] = {
    "paper": FlowConfig(),  # StyleFlow's size on 512-d codes is hidden 512 x 4-5
    "demo": FlowConfig(hidden_dim=256, num_layers=3),
    "tiny": FlowConfig(hidden_dim=32, num_layers=3, atol=1e-6, rtol=1e-6, max_steps=2_000),
}


class ConcatSquashLinear(nn.Module):
    """FFJORD's time-conditioned linear layer: ``(W x + b) * sigmoid(a t + c) + d t``.

    The parameters are held directly (W, b as ``nn.Linear`` initialises them; a, c, d as a
    ``Linear(1, d_out)`` would): a solve calls the layer hundreds of times on small batches, where
    per-call overhead dominates, so :meth:`apply` is a handful of fused tensor operations."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(d_out, d_in).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(d_out).uniform_(-bound, bound))
        self.gate_weight = nn.Parameter(torch.empty(d_out).uniform_(-1.0, 1.0))
        self.gate_bias = nn.Parameter(torch.empty(d_out).uniform_(-1.0, 1.0))
        self.time_weight = nn.Parameter(torch.empty(d_out).uniform_(-1.0, 1.0))

    def apply_to(self, t: Tensor, x: Tensor) -> Tensor:
        """``t``: (1, 1) or (B, 1) times in ``x``'s dtype; ``x``: (B, d_in) -> (B, d_out)."""
        gate = torch.sigmoid(torch.addcmul(self.gate_bias, t, self.gate_weight))
        return torch.addcmul(t * self.time_weight, F.linear(x, self.weight, self.bias), gate)

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """``t``: a scalar or one time per sample (B,); ``x``: (B, d_in) -> (B, d_out)."""
        return self.apply_to(t.to(x.dtype).reshape(-1, 1), x)


class ODEFunction(nn.Module):
    """f(x, t): concat-squash layers with softplus or tanh between them; counts its evaluations."""

    def __init__(self, dim: int, hidden: int, layers: int, activation: str = "softplus") -> None:
        super().__init__()
        widths = [dim, *([hidden] * (layers - 1)), dim]
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activation = F.softplus if activation == "softplus" else torch.tanh
        self.nfe = 0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        """dx/dt at times ``t`` (a scalar, or (B,)) and points ``x`` (B, dim)."""
        self.nfe += 1
        t = t.to(x.dtype).reshape(-1, 1)
        *hidden, last = self.layers
        for layer in hidden:
            x = self.activation(layer.apply_to(t, x))
        return last.apply_to(t, x)


class _Divergence(nn.Module):
    """Augmented dynamics (dx/dt, d delta/dt) = (f, -tr(df/dx)) for the log-likelihood (FFJORD).

    ``probe`` (B, dim): Hutchinson's estimator ``e^T (df/dx) e`` with that probe (fixed for the solve);
    None: the exact trace, from one vector-Jacobian product per basis vector, all in one batch
    (dim times the work of f: for evaluation at small dimension).
    """

    def __init__(self, func: ODEFunction, probe: Tensor | None, create_graph: bool) -> None:
        super().__init__()
        self.func, self.probe, self.create_graph = func, probe, create_graph

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        x = state[0]
        with torch.enable_grad():
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            if self.probe is not None:
                dx = self.func(t, x)
                (vjp,) = torch.autograd.grad(dx, x, self.probe, create_graph=self.create_graph)
                trace = torch.einsum("bi,bi->b", vjp, self.probe)
            else:
                dim = x.shape[1]
                xs = repeat(x, "b i -> (b j) i", j=dim)
                if not xs.requires_grad:
                    xs.requires_grad_(True)
                dxs = self.func(t, xs)
                basis = repeat(torch.eye(dim, dtype=x.dtype, device=x.device), "j i -> (b j) i", b=x.shape[0])
                (rows,) = torch.autograd.grad(dxs, xs, basis, create_graph=self.create_graph)
                trace = torch.einsum("bjj->b", rearrange(rows, "(b j) i -> b j i", j=dim))
                dx = rearrange(dxs, "(b j) i -> b j i", j=dim)[:, 0]
        if not self.create_graph:
            dx, trace = dx.detach(), trace.detach()
        return dx, -trace


CALIBRATION_STEPS = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)
CALIBRATION_TOLERANCES = (1e-6, 1e-7, 1e-8)


class ContinuousNormalizingFlow(Pretrained, nn.Module):
    """The CNF of paper section 3.5 on one region group's codes (B, K, D).

    ``flow(codes)`` is eq. 7 (code -> z), ``flow.reverse(z)`` eq. 8 (z -> code); ``flow.log_prob(codes)``
    the maximum-likelihood objective's log density; ``flow.flow_matching_loss(codes)`` the flow-matching
    objective. ``flow.nfe`` is the number of evaluations of f in the last solve. Saved and loaded as a
    checkpoint directory of kind ``flow`` (:class:`~facestyle.checkpoint.Pretrained`).
    """

    kind = "flow"
    config_class = FlowConfig

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        self.config = config
        k, d = len(config.classes), config.style_dim
        self.odefunc = ODEFunction(k * d, config.hidden_dim, config.num_layers, config.activation)
        normalizer = CodeWhitener if config.normalization == "whiten" else CodeStandardizer
        self.normalizer = normalizer(k, d)
        root = torch.tensor(math.sqrt(config.end_time))
        if config.train_end_time:
            self.sqrt_end_time = nn.Parameter(root)
        else:
            self.register_buffer("sqrt_end_time", root)
        self.nfe = 0

    @property
    def dim(self) -> int:
        return self.config.code_dim

    @property
    def end_time(self) -> Tensor:
        """T, the integration time (FFJORD parameterises it as a square)."""
        return self.sqrt_end_time.square()

    # ------------------------------------------------------------------------------------ codes <-> x

    def normalize(self, codes: Tensor) -> Tensor:
        """(B, K, D) codes -> (B, K*D) normalised points x where the ODE runs."""
        return rearrange(self.normalizer.normalize(codes), "b k d -> b (k d)")

    def denormalize(self, x: Tensor) -> Tensor:
        """(B, K*D) points -> (B, K, D) codes at the encoder's scale."""
        return self.normalizer.denormalize(rearrange(x, "b (k d) -> b k d", k=len(self.config.classes)))

    # ---------------------------------------------------------------------------------------- solves

    def _solve(self, func: nn.Module, y0: Tensor | tuple[Tensor, ...], reverse: bool,
               solver: Solver | None) -> Any:
        """Integrate ``func`` from 0 to T (or T to 0) and return the state at the end."""
        solver = solver or self.config.solver
        like = y0[0] if isinstance(y0, tuple) else y0
        end = self.end_time.to(like.dtype)
        zero = torch.zeros((), dtype=like.dtype, device=end.device)
        t = torch.stack([end, zero] if reverse else [zero, end]).to(like.device)
        if solver.adaptive:
            options: dict[str, Any] = {"max_num_steps": solver.max_steps}
        else:
            steps = solver.steps
            options = {"grid_constructor": lambda f, y, tt: torch.linspace(tt[0], tt[-1], steps + 1,
                                                                            dtype=tt.dtype, device=tt.device)}
        self.odefunc.nfe = 0
        try:
            out = odeint(func, y0, t, rtol=solver.rtol, atol=solver.atol, method=solver.method, options=options)
        except AssertionError as exc:
            if "max_num_steps" not in str(exc):
                raise
            raise SolverError(f"the ODE solver ({solver.describe()}) needed more than {solver.max_steps} steps; "
                              "loosen the tolerances, raise max_steps, or use a fixed-step solver") from None
        finally:
            self.nfe = self.odefunc.nfe
        return tuple(o[-1] for o in out) if isinstance(out, tuple) else out[-1]

    def forward(self, codes: Tensor, solver: Solver | None = None) -> Tensor:
        """Eq. 7: the group's codes (B, K, D) -> latent z (B, K*D), integrating f from 0 to T."""
        return self._solve(self.odefunc, self.normalize(codes), reverse=False, solver=solver)

    def reverse(self, z: Tensor, solver: Solver | None = None) -> Tensor:
        """Eq. 8: latent z (B, K*D) -> the group's codes (B, K, D), integrating f from T back to 0."""
        return self.denormalize(self._solve(self.odefunc, z, reverse=True, solver=solver))

    @torch.no_grad()
    def round_trip_error(self, codes: Tensor, solver: Solver | None = None) -> tuple[float, int]:
        """code -> z -> code with ``solver``: the largest relative error ``||s' - s|| / ||s||`` over ``codes``
        (B, K, D), and the evaluations of f it took (forward + reverse, for the whole batch)."""
        z = self(codes, solver)
        nfe = self.nfe
        back = self.reverse(z, solver)
        error = (back - codes).flatten(1).norm(dim=1) / codes.flatten(1).norm(dim=1).clamp_min(1e-12)
        return float(error.max()), nfe + self.nfe

    def calibrate_solver(self, codes: Tensor, tolerance: float = 1e-3) -> tuple[Solver, float, bool]:
        """The cheapest solver whose round trip returns ``codes`` within ``tolerance`` (relative, the
        largest error): rk4 with ``CALIBRATION_STEPS`` steps, the fewest first, then dopri5 at
        ``CALIBRATION_TOLERANCES``. Returns it, its error, and whether it passed (if none did: the most
        accurate one tried). How many steps a flow needs grows as it fits its bank more tightly, whatever
        objective trained it (``benchmarks/style_speed.py``), so a fixed default cannot be trusted."""
        tried = []
        candidates = [Solver("rk4", steps=n) for n in CALIBRATION_STEPS] + \
                     [Solver("dopri5", t, t, max_steps=self.config.max_steps) for t in CALIBRATION_TOLERANCES]
        for solver in candidates:
            try:
                error, _ = self.round_trip_error(codes, solver)
            except SolverError:
                continue
            if error <= tolerance:
                return solver, error, True
            tried.append((error, solver))
        if not tried:
            raise SolverError("no solver could integrate the flow (every adaptive solve ran out of steps)")
        error, solver = min(tried, key=lambda t: t[0] if math.isfinite(t[0]) else math.inf)
        return solver, error, False

    def sample(self, n: int, generator: torch.Generator | None = None, solver: Solver | None = None) -> Tensor:
        """``n`` codes (n, K, D) from z ~ N(0, I) (z drawn on the CPU from ``generator``)."""
        like = next(self.parameters())
        z = torch.randn(n, self.dim, generator=generator).to(device=like.device, dtype=like.dtype)
        return self.reverse(z, solver)

    # ----------------------------------------------------------------------------------- objectives

    def log_prob(self, codes: Tensor, trace: Literal["hutchinson", "exact"] = "exact",
                 probe: Literal["rademacher", "gaussian"] = "rademacher",
                 generator: torch.Generator | None = None, solver: Solver | None = None) -> Tensor:
        """log p(codes) (B,) in nats, by the instantaneous change of variables:

        ``log p(s) = log N(z; 0, I) + int_0^T tr(df/dx) dt - sum log std``, the trace exact or estimated
        by Hutchinson with one ``probe`` per sample (drawn on the CPU from ``generator``). Differentiable
        when grad is enabled (the maximum-likelihood objective)."""
        x = self.normalize(codes)
        e = None
        if trace == "hutchinson":
            e = torch.randn(x.shape, generator=generator) if probe == "gaussian" else \
                torch.randint(0, 2, x.shape, generator=generator).mul(2).sub(1)
            e = e.to(x)
        elif trace != "exact":
            raise InputError(f"trace must be hutchinson or exact, got {trace!r}")
        func = _Divergence(self.odefunc, e, create_graph=torch.is_grad_enabled())
        z, delta = self._solve(func, (x, torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)),
                               reverse=False, solver=solver)
        log_base = -0.5 * (z.square().sum(dim=1) + self.dim * math.log(2 * math.pi))
        return log_base - delta + self.normalizer.log_abs_det()

    def nll_per_dim(self, codes: Tensor, **kwargs: Any) -> Tensor:
        """The maximum-likelihood loss: mean negative log-likelihood per coordinate of the normalised
        codes (nats; the normalisation's constant log-determinant left out)."""
        return -(self.log_prob(codes, **kwargs) - self.normalizer.log_abs_det()).mean() / self.dim

    def flow_matching_loss(self, codes: Tensor, generator: torch.Generator | None = None,
                           coupling: Literal["independent", "minibatch-ot"] = "independent",
                           sigma_min: float = 0.0) -> Tensor:
        """Conditional flow matching on straight paths (rectified flow): with x the normalised codes,
        e ~ N(0, I) and u ~ U(0, 1), ``x_u = (1 - u) x + (s + (1 - s) u) e`` (s = ``sigma_min``; 0 is
        rectified flow) moves at ``((1 - s) e - x) / T`` in time T, and

            L = E || f(x_u, u T) - ((1 - s) e - x) / T ||^2   (mean over coordinates).

        ``sigma_min > 0`` (Lipman et al.'s Gaussian paths) blurs the codes by that much at u = 0, which
        bounds the field's sharpness near the data (codes near a thin manifold make it stiff there).
        ``coupling="minibatch-ot"`` pairs codes and noise samples by an optimal assignment within the
        batch; noise and times are drawn on the CPU from ``generator``."""
        x = self.normalize(codes)
        e = torch.randn(x.shape, generator=generator).to(x)
        u = torch.rand(x.shape[0], 1, generator=generator).to(x)
        if coupling == "minibatch-ot":
            e = e[optimal_assignment(x.detach(), e)]
        elif coupling != "independent":
            raise InputError(f"coupling must be independent or minibatch-ot, got {coupling!r}")
        end = self.end_time.to(x.dtype)
        x_u = (1 - u) * x + (sigma_min + (1 - sigma_min) * u) * e
        velocity = self.odefunc(u[:, 0] * end, x_u)
        return (velocity - ((1 - sigma_min) * e - x) / end).square().mean()


def optimal_assignment(x: Tensor, e: Tensor) -> Tensor:
    """The permutation of ``e`` (B, dim) minimising the summed squared distance to ``x`` (B, dim)
    (Hungarian algorithm, on the CPU): ``e[perm]`` is paired with ``x``."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x.double(), e.double()).square().cpu().numpy()
    _, cols = linear_sum_assignment(cost)
    return torch.as_tensor(cols, device=e.device)
