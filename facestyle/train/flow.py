"""Training a region group's continuous normalizing flow on a style bank (paper section 3.5, eq. 7-8).

Two objectives for the same ODE network (:class:`~facestyle.nn.flow.ContinuousNormalizingFlow`):

- ``maximum-likelihood`` (FFJORD, as the paper): minimise -log p(s) per coordinate, the trace of the
  Jacobian estimated by Hutchinson's estimator (one Rademacher or Gaussian probe per sample and solve),
  solved with dopri5 at ``train.atol``/``train.rtol`` and back-propagated through the solver; Adam 1e-3.
  Every step costs a full adaptive solve, and the number of evaluations grows as the flow sharpens.
- ``flow-matching`` (conditional flow matching on straight paths / rectified flow): regress the ODE
  function on the velocity of straight lines from codes to Gaussian samples at random times; no solve
  in training, so a step costs one forward and backward pass of the network (measured: the same
  held-out likelihood in 15-50x less training time than maximum likelihood). ``train.coupling =
  minibatch-ot`` pairs codes and noise by an optimal assignment within each batch; ``train.sigma_min``
  widens the paths at the codes.

Both give an invertible map (a flow of an ODE). When training ends, the flow's default solver (unless
``model.method`` names one) becomes the cheapest rk4 (then dopri5) whose round trip code -> z -> code
returns ``train.round_trip_codes`` bank codes within half ``train.round_trip_tolerance`` (1e-3 relative), and
the log says which and the error; the ``final`` folder holds that config, the step checkpoints keep theirs
so that a run resumes as it was. The run folder, logging, checkpoints and resume are the mapping
trainer's (:class:`facestyle.train.mapping.BankTrainer`); the finished flow is copied to
``CHECKPOINT/flow/REGION`` with ``install_to=CHECKPOINT``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

from ..errors import InputError
from ..nn.flow import FLOW_PRESETS, ContinuousNormalizingFlow, FlowConfig, Solver, SolverError
from .common import as_floats, log
from .mapping import BankTrainer, resolve_configs, run_bank_training

__all__ = ["FlowTrainConfig", "FLOW_TRAIN_PRESETS", "FlowTrainer", "train_flow", "OBJECTIVES", "calibration_codes"]

OBJECTIVES = ("maximum-likelihood", "flow-matching")


@dataclass(frozen=True)
class FlowTrainConfig:
    """Optimisation of a flow; ``atol``/``rtol``/``max_steps`` are the training solves' (maximum
    likelihood only; inference uses the model config's solver)."""

    batch_size: int = 256
    steps: int = 10_000
    lr: float = 1e-3  # FFJORD's
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    probe: Literal["rademacher", "gaussian"] = "rademacher"
    atol: float = 1e-5
    rtol: float = 1e-5
    max_steps: int = 1_000
    coupling: Literal["independent", "minibatch-ot"] = "independent"
    sigma_min: float = 0.0  # flow matching's path width at the codes (0: rectified flow)
    # the finished flow's default solver: the cheapest that returns this many bank codes through
    # code -> z -> code within this relative error (0: keep the configured solver, only report its error)
    round_trip_tolerance: float = 1e-3
    round_trip_codes: int = 256
    log_every: int = 100
    save_every: int = 1_000
    keep_last: int = 3
    seed: int = 0
    deterministic: bool = False


FLOW_TRAIN_PRESETS: dict[str, FlowTrainConfig] = {
    "paper": FlowTrainConfig(),
    "demo": FlowTrainConfig(batch_size=256, steps=3_000, atol=1e-4, rtol=1e-4, log_every=50, save_every=500,
                            keep_last=2),
    "tiny": FlowTrainConfig(batch_size=32, steps=100, atol=1e-3, rtol=1e-3, max_steps=200, log_every=25,
                            save_every=50, keep_last=2),
}


class FlowTrainer(BankTrainer):
    """One group's flow, trained by maximum likelihood or flow matching on a style bank."""

    kind = "flow"
    command = "train-flow"

    def build(self) -> None:
        cfg = self.train_config
        if cfg.probe not in ("rademacher", "gaussian"):
            raise InputError(f"train.probe must be rademacher or gaussian, got {cfg.probe!r}")
        if cfg.coupling not in ("independent", "minibatch-ot"):
            raise InputError(f"train.coupling must be independent or minibatch-ot, got {cfg.coupling!r}")
        if not 0 <= cfg.sigma_min < 1:
            raise InputError(f"train.sigma_min must be in [0, 1), got {cfg.sigma_min}")
        if cfg.round_trip_tolerance < 0 or cfg.round_trip_codes < 1:
            raise InputError(f"train.round_trip_tolerance must be >= 0 and train.round_trip_codes >= 1, got "
                             f"{cfg.round_trip_tolerance} and {cfg.round_trip_codes}")
        self.solver = Solver("dopri5", cfg.atol, cfg.rtol, max_steps=cfg.max_steps)
        self.network = ContinuousNormalizingFlow(self.model_config).to(self.device)
        self.optimizer = torch.optim.Adam(self.network.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
                                          weight_decay=cfg.weight_decay)

    def train_step(self, codes: Tensor) -> dict[str, float]:
        cfg = self.train_config
        if self.model_config.objective == "maximum-likelihood":
            loss = self.network.nll_per_dim(codes, trace="hutchinson", probe=cfg.probe, solver=self.solver)
            extra = {"solver/nfe": loss.new_tensor(float(self.network.nfe))}
        else:
            loss = self.network.flow_matching_loss(codes, coupling=cfg.coupling, sigma_min=cfg.sigma_min)
            extra = {}
        self.check_finite({"loss": loss})
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return as_floats({"loss": loss, **extra})

    def extra_scalars(self) -> dict[str, float]:
        return {"flow/end_time": float(self.network.end_time)}

    def describe(self) -> str:
        return f"{super().describe()}, {self.model_config.objective}"

    def write_final_files(self, directory: Path) -> None:
        """The finished flow, its default solver calibrated on bank codes (see
        :meth:`~facestyle.nn.flow.ContinuousNormalizingFlow.calibrate_solver`) unless the config names one.
        The calibration asks for half ``train.round_trip_tolerance``: a margin for codes it has not seen."""
        cfg, flow = self.train_config, self.network
        codes = calibration_codes(self.codes, cfg.round_trip_codes, cfg.seed).to(self.device)
        flow.eval()
        if cfg.round_trip_tolerance > 0 and flow.config.method == "auto":
            log(self.dist, f"choosing the default ODE solver: round trips of {len(codes)} bank codes ...")
            solver, error, passed = flow.calibrate_solver(codes, cfg.round_trip_tolerance / 2)
            fields = {"atol": solver.atol, "rtol": solver.rtol} if solver.adaptive else {"steps": solver.steps}
            flow.config = replace(flow.config, method=solver.method, **fields)
            verdict = "within" if passed else "warning: NOT within"
            log(self.dist, f"default solver {solver.describe()}: code -> z -> code on {len(codes)} bank codes, "
                           f"largest relative error {error:.1e} ({verdict} half of train.round_trip_tolerance="
                           f"{cfg.round_trip_tolerance:g})")
            self.save_network(directory)
            return
        try:
            error, _ = flow.round_trip_error(codes)
            log(self.dist, f"default solver {flow.config.solver.describe()}: code -> z -> code on {len(codes)} "
                           f"bank codes, largest relative error {error:.1e}")
        except SolverError as exc:
            log(self.dist, f"warning: the default solver cannot integrate the flow: {exc}")
        super().write_final_files(directory)

    def aux_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict()}

    def load_aux_state(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])


def calibration_codes(codes: Tensor, n: int, seed: int) -> Tensor:
    """The ``n`` bank codes (a fixed random subset) on which a finished flow's default solver is chosen."""
    pick = torch.randperm(len(codes), generator=torch.Generator().manual_seed(seed))[:n]
    return codes[pick]


def train_flow(bank: str | os.PathLike | None, out_dir: str | os.PathLike, region: str = "skin", *,
               objective: str | None = None, preset: str | None = None, overrides: list[str] | None = None,
               resume: bool | str | os.PathLike = False, device: str = "cpu", stop_at: int | None = None,
               install_to: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Train the flow of ``region`` on a style bank and return the run folder.

    ``objective``: ``maximum-likelihood`` (default) or ``flow-matching``. The other arguments are
    :func:`facestyle.train.mapping.train_mapping`'s; the finished flow goes to ``install_to/flow/REGION``.
    """
    if objective is not None and objective not in OBJECTIVES:
        raise InputError(f"unknown objective {objective!r}; choose one of: {', '.join(OBJECTIVES)}")
    changes = {} if resume or objective is None else {"objective": objective}
    model, train = resolve_configs(FlowConfig, FlowTrainConfig, FLOW_PRESETS, FLOW_TRAIN_PRESETS, bank, out_dir,
                                   region, preset, overrides, resume, **changes)
    if resume and objective is not None and objective != model.objective:
        raise InputError(f"the run was trained with {model.objective}; it cannot resume with {objective}")
    if model.objective == "flow-matching" and model.train_end_time:
        model = replace(model, train_end_time=False)  # the straight paths fix T
    return run_bank_training(FlowTrainer, model, train, bank, out_dir, resume=resume, device=device,
                             stop_at=stop_at, install_to=install_to, overwrite=overwrite)
