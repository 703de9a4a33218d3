"""End-of-session tables of the benchmarks: the same-run ratios of the training-step benchmarks,
and every recorded benchmark against the sgemm rate measured in the same session (``_floor.py``)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _floor  # noqa: E402


def pytest_terminal_summary(terminalreporter):
    _training_step_table(terminalreporter)
    _floor_table(terminalreporter)


def _training_step_table(tr):
    mod = sys.modules.get("bench_nn") or sys.modules.get("benchmarks.bench_nn")
    medians = getattr(mod, "MEDIANS", None)
    if not medians:
        return
    flops = mod.step_flops
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


def _floor_table(tr):
    """Per recorded benchmark: median per call, GFLOP/s and the fraction of the sgemm rate."""
    if not _floor.ROWS:
        if _floor.UNTIMED:
            tr.section("FLOPs against the sgemm rate")
            tr.write_line(f"timings disabled (--benchmark-disable): no table "
                          f"({len(_floor.UNTIMED)} benchmarks ran untimed)")
        return
    tr.section("FLOPs against the sgemm rate measured in this session")
    tr.write_line(_floor.rate_line())
    tr.write_line("FLOP/call: the matrix products of one call (2 m n k each; element-wise work "
                  "not counted); sgemm: the rate (GFLOP/s) at the benchmark's threads; n/a: not "
                  "matrix products")
    for line in _floor.table_lines():
        tr.write_line(line)
