"""Speed of random styles and style fine-tuning: the mapping network (paper eq. 3) and the CNF round trip
(eq. 7-8) with flows trained by maximum likelihood (FFJORD) and by flow matching.

One run prints two tables, then last a headline line.

- ``mapping``: seconds per generated style code, batch 1 and batch 64 (the demo preset's architecture for
  the skin group: 2 classes x D).
- Flows: a maximum-likelihood flow and a flow-matching flow trained for the same wall-clock budget
  (``--train-seconds``), then two flow-matching flows (independent and minibatch-OT coupling) trained
  only until they reach the maximum-likelihood flow's held-out likelihood: the same density-model
  quality. For each: the held-out negative log-likelihood (nats per coordinate of the normalised codes,
  exact trace; lower is better), one fine-tuning round trip (code -> z -> code, batch 1) at the shared
  tolerance (dopri5, ``--tol``) and with the flow-matching default (rk4 x8): milliseconds, evaluations of
  the ODE function (NFE, forward + reverse) and round-trip error (max over 256 held-out codes of
  ||s' - s|| / ||s||).
- NFE at the same round-trip accuracy: for each flow and each accuracy (1e-2, 1e-3: the invertibility
  the project guarantees, 1e-4, and the maximum-likelihood flow's error at ``--tol``), the fewest NFE of
  any candidate solver (rk4 with 1 to 32 steps, dopri5 at 1e-2 to 1e-6) whose round-trip error is at most
  that; and the ratio maximum likelihood / flow matching.

Unless flow checkpoints are given, the benchmark trains the flows itself on a synthetic bank of the skin
group's dimension (2 x 64 codes: a curved 8-dimensional manifold, a random tanh network of 8 Gaussian
factors, as the encoder's codes are region means of tanh features, plus noise), or on ``--bank``'s skin
codes (the last 256 held out).

    python benchmarks/style_speed.py                      # about 9 minutes on 2 cores
    python benchmarks/style_speed.py --train-seconds 20   # quick
    python benchmarks/style_speed.py --bank runs/demo/bank.safetensors
    python benchmarks/style_speed.py --flow-ml DIR --flow-fm DIR --bank BANK.safetensors
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

import torch

from facestyle.nn.flow import FLOW_PRESETS, ContinuousNormalizingFlow, Solver
from facestyle.nn.mapping import MAPPING_PRESETS, MappingNetwork

K, D = 2, 64  # the skin group (skin + nose) at D = 64: twice the demo model's style length (the paper: 512)


# ----------------------------------------------------------------------------------------------- data


def synthetic_bank(n: int, seed: int, dim: int = K * D, factors: int = 8) -> torch.Tensor:
    """Codes (n, K, D) on a curved ``factors``-dimensional manifold plus 2% noise (fixed network)."""
    net = torch.Generator().manual_seed(1234)
    w1, b1 = torch.randn(factors, 64, generator=net), torch.randn(64, generator=net)
    w2, b2 = torch.randn(64, dim, generator=net) / 4, torch.randn(dim, generator=net) / 2
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(n, factors, generator=g)
    codes = torch.tanh(torch.nn.functional.softplus(u @ w1 + b1) @ w2 + b2) * 0.5
    return (codes + 0.02 * torch.randn(n, dim, generator=g)).reshape(n, K, -1)


# ------------------------------------------------------------------------------------------- timings


def seconds_per_call(fn, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


@torch.no_grad()
def mapping_rows(style_dim: int) -> list[tuple[str, str]]:
    torch.manual_seed(0)
    net = MappingNetwork(replace(MAPPING_PRESETS["demo"], classes=(1, 2), style_dim=style_dim)).eval()
    rows = []
    for batch in (1, 64):
        z = torch.randn(batch, net.config.latent_dim)
        per_code = seconds_per_call(lambda z=z: net(z), repeats=300) / batch
        rows.append((f"mapping, batch {batch}", f"{per_code:.2e} s/code"))
    params = sum(p.numel() for p in net.parameters())
    return rows, params


def train(objective: str, codes: torch.Tensor, seconds: float, normalization: str, seed: int = 0,
          until_nll: tuple[float, torch.Tensor] | None = None,
          coupling: str = "independent") -> tuple[ContinuousNormalizingFlow, int, float]:
    """A demo-size flow trained for ``seconds`` of wall clock (or, with ``until_nll=(nll, codes)``, until
    its NLL on those codes is at most ``nll``, checked every 25 steps); returns it, its steps and the
    seconds spent training (NLL checks excluded)."""
    torch.manual_seed(seed)
    cfg = replace(FLOW_PRESETS["demo"], classes=(1, 2), style_dim=codes.shape[-1], objective=objective,
                  normalization=normalization)
    flow = ContinuousNormalizingFlow(cfg)
    flow.normalizer.fit(codes)
    optimizer = torch.optim.Adam(flow.parameters(), lr=1e-3)
    solver = Solver("dopri5", 1e-5, 1e-5, max_steps=1_000)  # FFJORD's training tolerance
    g = torch.Generator().manual_seed(seed)
    steps, spent = 0, 0.0
    while spent < seconds:
        tic = time.perf_counter()
        batch = codes[torch.randint(0, len(codes), (256,), generator=g)]
        if objective == "maximum-likelihood":
            loss = flow.nll_per_dim(batch, trace="hutchinson", generator=g, solver=solver)
        else:
            loss = flow.flow_matching_loss(batch, generator=g, coupling=coupling)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        steps += 1
        spent += time.perf_counter() - tic
        if until_nll is not None and steps % 25 == 0:
            flow.eval()
            reached = nll(flow, until_nll[1]) <= until_nll[0]
            flow.train()
            if reached:
                break
    return flow.eval(), steps, spent


@torch.no_grad()
def round_trip(flow: ContinuousNormalizingFlow, codes: torch.Tensor, solver: Solver) -> dict[str, float]:
    """Round-trip error over ``codes``; time and NFE of one code's round trip (median over 30 trips)."""
    back = flow.reverse(flow(codes, solver), solver)
    error = float(((back - codes).flatten(1).norm(dim=1) / codes.flatten(1).norm(dim=1)).max())
    times, nfes = [], []
    for i in range(30):
        one = codes[i % 10:i % 10 + 1]
        tic = time.perf_counter()
        z = flow(one, solver)
        nfe = flow.nfe
        flow.reverse(z, solver)
        times.append(time.perf_counter() - tic)
        nfes.append(nfe + flow.nfe)
    return {"error": error, "ms": 1e3 * statistics.median(times), "nfe": statistics.median(nfes)}


@torch.no_grad()
def nll(flow: ContinuousNormalizingFlow, codes: torch.Tensor) -> float:
    log_p = flow.log_prob(codes, trace="exact", solver=Solver("dopri5", 1e-5, 1e-5))
    return float(-(log_p - flow.normalizer.log_abs_det()).mean() / flow.dim)


CANDIDATES = [Solver("rk4", steps=s) for s in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)] + \
             [Solver("dopri5", t, t) for t in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6)]
ACCURACIES = (1e-2, 1e-3, 1e-4)


def cheapest(results: list[tuple[Solver, dict]], target: float) -> tuple[Solver, dict] | None:
    """Of the candidates' round trips, the one with the fewest NFE whose error is at most ``target``."""
    good = [r for r in results if r[1]["error"] <= target]
    return min(good, key=lambda r: (r[1]["nfe"], r[1]["error"])) if good else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train-seconds", type=float, default=150.0, help="training budget per objective")
    p.add_argument("--tol", type=float, default=1e-5, help="the shared dopri5 tolerance (atol = rtol)")
    p.add_argument("--normalization", choices=("standardize", "whiten"), default="standardize")
    p.add_argument("--flow-ml", metavar="DIR", help="a maximum-likelihood flow checkpoint (skips its training)")
    p.add_argument("--flow-fm", metavar="DIR", help="a flow-matching flow checkpoint (skips its training)")
    p.add_argument("--bank", metavar="BANK", help="a style bank whose last 256 skin codes are the held-out set")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: steadier on a shared CPU)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    mapping, params = mapping_rows(D)
    print(f"mapping network (demo preset, {params:,} parameters, {K} x {D} codes)")
    for name, value in mapping:
        print(f"  {name:<22} {value}")

    if args.bank:
        from facestyle.styles.bank import StyleBank

        bank_codes = StyleBank.load(args.bank).region("skin")[1]
        train_codes, held_out = bank_codes[:-256], bank_codes[-256:]
    else:
        train_codes, held_out = synthetic_bank(8192, seed=0), synthetic_bank(256, seed=1)
    flows: dict[str, tuple[ContinuousNormalizingFlow, str]] = {}
    for objective, given in (("maximum-likelihood", args.flow_ml), ("flow-matching", args.flow_fm)):
        if given:
            from facestyle.styles.networks import load_style_network

            flows[objective] = load_style_network(given, "flow"), "given"
        else:
            print(f"training a {objective} flow for {args.train_seconds:.0f} s ...", flush=True)
            flow, steps, spent = train(objective, train_codes, args.train_seconds, args.normalization)
            flows[objective] = flow, f"{steps} in {spent:.0f} s"
    likelihood = {name: nll(flow, held_out[:64]) for name, (flow, _) in flows.items()}
    if not args.flow_fm:  # the same density-model quality: flow matching until the ML flow's likelihood
        same = (("independent", "flow-matching, same NLL"), ("minibatch-ot", "flow-matching OT, same NLL"))
        for coupling, name in same:
            print(f"training a flow-matching flow ({coupling} coupling) until the maximum-likelihood flow's NLL ...",
                  flush=True)
            flow, steps, spent = train("flow-matching", train_codes, args.train_seconds, args.normalization,
                                       until_nll=(likelihood["maximum-likelihood"], held_out[:64]), coupling=coupling)
            flows[name] = flow, f"{steps} in {spent:.0f} s"
            likelihood[name] = nll(flow, held_out[:64])

    shared = Solver("dopri5", args.tol, args.tol)
    default = Solver("rk4", steps=8)
    print("solving round trips ...", flush=True)
    trips = {name: [(solver, round_trip(flow, held_out, solver)) for solver in CANDIDATES]
             for name, (flow, _) in flows.items()}
    at = {name: {solver.describe(): r for solver, r in results} for name, results in trips.items()}

    header = ("flow", "training steps", "NLL/dim", "solver", "NFE", "ms/round trip", "round-trip err")
    rows = []
    for solver in (shared, default):
        for name in flows:
            r = at[name][solver.describe()]
            rows.append((name, flows[name][1], f"{likelihood[name]:.3f}", solver.describe(), f"{r['nfe']:.0f}",
                         f"{r['ms']:.1f}", f"{r['error']:.1e}"))
    print(f"\nfine-tuning round trip (code -> z -> code, batch 1; {len(held_out)} held-out codes of "
          f"{K} x {held_out.shape[-1]}; {args.normalization} normalisation; NLL in nats per normalised coordinate)")
    print_table(header, rows)

    ml_error = max(at["maximum-likelihood"][shared.describe()]["error"], 1e-6)
    accuracies = (*ACCURACIES, ml_error)
    header = ("round-trip error at most", *flows, *(f"ML / {name}" for name in flows if name != "maximum-likelihood"))
    rows, ratio = [], {}
    for target in accuracies:
        best = {name: cheapest(trips[name], target) for name in flows}
        row = [f"{target:.1e}" + (" (ML at --tol)" if target == ml_error else "")]
        row += [f"{b[1]['nfe']:.0f} ({b[0].describe()})" if b else "none" for b in best.values()]
        for name in flows:
            if name != "maximum-likelihood":
                ml, fm = best["maximum-likelihood"], best[name]
                ratio[name, target] = ml[1]["nfe"] / fm[1]["nfe"] if ml and fm else float("nan")
                row.append(f"{ratio[name, target]:.2f}")
        rows.append(tuple(row))
    print("\nNFE of the cheapest solver at the same round-trip accuracy (NFE (solver); ML / flow matching)")
    print_table(header, rows)

    fm_default = at["flow-matching"][default.describe()]
    parts = [f"mapping_s_per_code_b64={float(mapping[1][1].split()[0]):.2e}",
             f"fm_round_trip_ms={fm_default['ms']:.1f}",
             f"nfe_ratio_ml_over_fm_same_accuracy={ratio['flow-matching', ml_error]:.2f}"]
    for name, key in (("flow-matching, same NLL", "same_nll"), ("flow-matching OT, same NLL", "ot_same_nll")):
        if name in flows:
            parts.append(f"nfe_ratio_ml_over_fm_{key}_at_1e-3={ratio[name, 1e-3]:.2f}")
    print("\n" + " ".join(parts))


def print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)))


if __name__ == "__main__":
    main()
