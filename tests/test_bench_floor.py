"""benchmarks/_floor.py: the FLOP counts against hand-computed values for a tiny net, the sgemm rate
helper, and the figures and table the benchmarks report (no speed is asserted)."""
import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "_floor.py"
_spec = importlib.util.spec_from_file_location("bench_floor_under_test", SCRIPT)
floor = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(floor)

# the tiny net: 3 -> 4 -> 2, two members, five rows; per row 3*4 + 4*2 = 20 multiply-adds
DIMS, ROWS, MEMBERS = (3, 4, 2), 5, 2


def test_forward_counts_two_flops_per_multiply_add():
    assert floor.mlp_macs(DIMS) == 20
    assert floor.forward_flops(DIMS, ROWS) == 2 * 5 * 20
    assert floor.forward_flops(DIMS, ROWS, MEMBERS) == 2 * 2 * 5 * 20


def test_backward_counts_weight_and_input_gradients():
    # weight gradients of both layers (12 + 8) and the second layer's input gradient (8)
    assert floor.backward_flops(DIMS, ROWS, MEMBERS) == 2 * 2 * 5 * (12 + 8 + 8)
    # with the first layer's input gradient too (12)
    assert floor.backward_flops(DIMS, ROWS, MEMBERS, input_grad=True) == 2 * 2 * 5 * (20 + 20)
    # a VJP: input gradients only
    assert floor.backward_flops(DIMS, ROWS, MEMBERS, weight_grads=False,
                                input_grad=True) == 2 * 2 * 5 * 20
    assert floor.backward_flops(DIMS, ROWS, weight_grads=False) == 0


def test_training_step_and_vjp():
    assert floor.train_step_flops(DIMS, ROWS, MEMBERS) == 2 * 2 * 5 * (20 + 28)   # 960
    assert floor.vjp_flops(DIMS, ROWS, MEMBERS) == 2 * 2 * 5 * 40                 # 800
    assert floor.vjp_flops(DIMS, ROWS) == 2 * floor.forward_flops(DIMS, ROWS)


def test_adam_counts_per_parameter():
    assert floor.param_count(DIMS, MEMBERS) == 2 * ((12 + 4) + (8 + 2))           # 52
    assert floor.adam_flops(52) == 15 * 52


def test_fit_counts_steps_and_holdout_passes():
    step = floor.train_step_flops(DIMS, 4, MEMBERS)             # 4-row minibatches: 768
    hold = floor.forward_flops(DIMS, 3, MEMBERS)                # 3 holdout rows: 240
    assert (step, hold) == (768, 240)
    # 10 training rows in batches of 4: 3 steps per epoch; 2 epochs; holdout scored before,
    # after each epoch and for the calibration: 4 passes
    assert floor.fit_flops(DIMS, MEMBERS, 10, 3, 4, epochs=2) == 6 * 768 + 4 * 240
    assert floor.fit_flops(DIMS, MEMBERS, 10, 3, 4, epochs=2, max_steps=4) == 4 * 768 + 4 * 240
    assert floor.fit_flops(DIMS, MEMBERS, 10, 0, 4, epochs=2) == 6 * 768           # no holdout
    # a batch larger than the training set is capped at it (one 10-row step per epoch)
    assert floor.fit_flops(DIMS, MEMBERS, 10, 0, 64, epochs=1) == floor.train_step_flops(
        DIMS, 10, MEMBERS)


def test_history_fit_flops_reads_the_model_and_history():
    model = SimpleNamespace(net=SimpleNamespace(layer_dims=DIMS, ensemble_size=MEMBERS))
    hist = SimpleNamespace(n_train=10, n_holdout=3, epochs_run=2)
    assert floor.history_fit_flops(model, hist, 4) == 6 * 768 + 4 * 240


def test_sgemm_rate_is_positive_and_finite():
    for threads in (1, 2):
        rate = floor.measure_sgemm_rate(threads, n=32, rounds=3, calls=2, warmup_rounds=1)
        assert math.isfinite(rate) and rate > 0


def test_sgemm_rate_is_measured_once(monkeypatch):
    calls = []
    monkeypatch.setattr(floor, "RATES", {})
    monkeypatch.setattr(floor, "measure_sgemm_rate", lambda t: calls.append(t) or 1e9 * t)
    assert floor.sgemm_rate(2) == floor.sgemm_rate(2) == 2e9
    assert calls == [2]
    assert "2 threads 2.0 GFLOP/s" in floor.rate_line()


def _fake_benchmark(median=0.5, disabled=False):
    stats = None if disabled else SimpleNamespace(stats=SimpleNamespace(median=median))
    return SimpleNamespace(fullname="benchmarks/bench_x.py::test_y[a]", disabled=disabled,
                           stats=stats, extra_info={})


@pytest.fixture
def fixed_rates(monkeypatch):
    """1 thread: 10 GFLOP/s, 2 threads: 20 GFLOP/s; empty tables."""
    monkeypatch.setattr(floor, "RATES", {1: 10e9, 2: 20e9})
    monkeypatch.setattr(floor, "ROWS", {})
    monkeypatch.setattr(floor, "UNTIMED", [])


def test_record_fills_extra_info_and_the_table(fixed_rates):
    bench = _fake_benchmark(median=0.5)
    floor.record(bench, 4e9, 1)                       # 8 GFLOP/s of 10: 80%
    info = bench.extra_info
    assert info["flops_per_call"] == 4_000_000_000 and info["seconds_per_call"] == 0.5
    assert info["gflops"] == pytest.approx(8.0)
    assert info["sgemm_gflops"] == pytest.approx(10.0) and info["sgemm_threads"] == 1
    assert info["fraction_of_sgemm"] == pytest.approx(0.8)
    header, line = floor.table_lines()
    assert "of sgemm" in header
    assert line.split() == ["bench_x.py::test_y[a]", "1", "500", "ms", "4", "G", "8.0", "10.0",
                            "80.0%"]


def test_record_parts_adds_the_floor_times(fixed_rates):
    bench = _fake_benchmark(median=1.0)
    # 2 GFLOP on 2 threads (0.1 s at 20 GFLOP/s) + 1 GFLOP on 1 thread (0.1 s at 10)
    floor.record_parts(bench, [(2e9, 2), (1e9, 1)])
    info = bench.extra_info
    assert info["sgemm_threads"] == [2, 1]
    assert info["fraction_of_sgemm"] == pytest.approx(0.2)
    assert info["sgemm_gflops"] == pytest.approx(15.0)
    assert floor.table_lines()[1].split()[1] == "2+1"


def test_seconds_override_and_not_counted(fixed_rates):
    bench = _fake_benchmark(median=9.0)
    floor.record(bench, 1e6, 1, seconds=1e-3)
    assert bench.extra_info["seconds_per_call"] == 1e-3
    assert bench.extra_info["fraction_of_sgemm"] == pytest.approx(0.1)
    other = _fake_benchmark(median=2e-3)
    other.fullname = "benchmarks/bench_x.py::test_import"
    floor.not_counted(other, "imports")
    assert other.extra_info == {"flops_per_call": "n/a", "flops_note": "imports"}
    assert floor.table_lines()[2].split()[-4:] == ["n/a"] * 4


def test_disabled_timings_record_nothing(fixed_rates):
    bench = _fake_benchmark(disabled=True)
    assert floor.record(bench, 1e9, 1) is None
    floor.not_counted(bench, "imports")
    assert bench.extra_info == {} and floor.ROWS == {}
    assert floor.UNTIMED == [bench.fullname] * 2
