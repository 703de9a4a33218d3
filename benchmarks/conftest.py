"""Print the same-run ratios of the training-step benchmarks at the end of the session."""
import sys


def pytest_terminal_summary(terminalreporter):
    mod = sys.modules.get("bench_nn") or sys.modules.get("benchmarks.bench_nn")
    medians = getattr(mod, "MEDIANS", None)
    if not medians:
        return
    flops = mod.step_flops
    tr = terminalreporter
    tr.section("training step: medians of this run")
    tr.write_line(f"{'case':<5}{'threads':>8}{'impl':>10}{'ms':>10}{'steps/s':>10}{'GFLOP/s':>10}"
                  f"{'vs numpy':>10}{'vs torch':>10}")
    for (case, impl, nt), med in sorted(medians.items()):
        ratios = []
        for other in ("numpy", "torch"):
            ref = medians.get((case, other, nt))
            ratios.append(f"{ref / med:10.2f}" if ref is not None else f"{'-':>10}")
        tr.write_line(f"{case:<5}{nt:>8}{impl:>10}{med * 1e3:10.3f}{1 / med:10.0f}"
                      f"{flops(case) / med / 1e9:10.1f}{ratios[0]}{ratios[1]}")
