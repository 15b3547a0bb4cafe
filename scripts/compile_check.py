#!/usr/bin/env python3
"""torch.compile an FNO (or WNO) built on dtwin's ops: no graph breaks, the compiled model equals eager
(forward and gradients), and the time of a training step eager vs compiled.

    python3 scripts/compile_check.py [--model fno|wno] [--device cuda] [--backend inductor] [--batch 100]

Exits 1 when dynamo breaks the graph or the compiled model disagrees with eager.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fno", choices=["fno", "wno"], help="the HH paper's FNO or WNO")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda")
    p.add_argument(
        "--backend", default="inductor", help="torch.compile backend (inductor; aot_eager is fast to compile)"
    )
    p.add_argument("--batch", type=int, default=100, help="functions per batch (500 points each)")
    p.add_argument("--repeats", type=int, default=20, help="timed training steps of each model")
    return p.parse_args(argv)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _median_step_ms(step, device: str, repeats: int) -> float:
    for _ in range(3):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def check(model_name: str, device: str, backend: str, batch: int, repeats: int) -> int:
    from dtwin_operators.fno import FNO
    from dtwin_operators.wno import WNO

    torch.manual_seed(0)
    model = {"fno": FNO, "wno": WNO}[model_name](out_offset=-72.0, out_scale=13.0).to(device)
    x = {"x": torch.randn(batch, 2, 500, device=device)}
    y = torch.randn(batch, 1, 500, device=device) - 70

    explanation = torch._dynamo.explain(model)(x)
    print(f"dynamo: {explanation.graph_count} graph(s), {explanation.graph_break_count} break(s)")
    for reason in explanation.break_reasons:
        print(f"  break: {reason.reason}")
    torch._dynamo.reset()

    compiled = torch.compile(model, backend=backend, fullgraph=True)

    def grads(m):
        model.zero_grad(set_to_none=True)
        loss = model.loss(m(x), y)
        loss.backward()
        return loss.detach(), [p.grad.detach().clone() for p in model.parameters()]

    loss_e, grad_e = grads(model)
    loss_c, grad_c = grads(compiled)
    rel = max(
        float((a - b).norm() / b.norm().clamp_min(1e-30))
        for a, b in zip([loss_c, *grad_c], [loss_e, *grad_e], strict=True)
    )
    print(
        f"compiled ({backend}) vs eager: loss {loss_c.item():.6g} vs {loss_e.item():.6g}, "
        f"largest relative difference of loss and gradients {rel:.2e}"
    )

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step_of(m):
        def step():
            optimizer.zero_grad(set_to_none=True)
            model.loss(m(x), y).backward()
            optimizer.step()

        return step

    eager_ms = _median_step_ms(step_of(model), device, repeats)
    compiled_ms = _median_step_ms(step_of(compiled), device, repeats)
    print(
        f"{model_name} training step ({device}, batch {batch} x 500): eager {eager_ms:.3f} ms, "
        f"compiled {compiled_ms:.3f} ms, speed-up {eager_ms / compiled_ms:.2f}x"
    )
    ok = explanation.graph_break_count == 0 and rel < 1e-3
    print("compile check:", "ok" if ok else "FAILED")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    return check(args.model, args.device, args.backend, args.batch, args.repeats)


if __name__ == "__main__":
    sys.exit(main())
