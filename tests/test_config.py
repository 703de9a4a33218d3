"""fastmbrl.config: sections are the dataclass fields of RunConfig, so a new algorithm's settings
are one added field; cross-field checks; the constants come from fastmbrl._config."""
from dataclasses import dataclass, field

import pytest

from fastmbrl import _config, _threads
from fastmbrl.config import ConfigError, RunConfig, apply_overrides, from_dict, sections, to_dict


def test_sections_are_the_dataclass_fields():
    assert list(sections()) == ["model", "planner", "algorithm", "sac", "mbpo", "dhmbpo"]
    assert RunConfig().algorithm.name == "pets"


@dataclass(frozen=True)
class ToyConfig:
    """Settings of a toy algorithm (tests only)."""

    lr: float = 3e-4
    updates: int = 1

    def checks(self):
        return [("lr", self.lr > 0, "positive")]


@dataclass(frozen=True)
class ExtendedRunConfig(RunConfig):
    """RunConfig with one more section, as a new algorithm would add it."""

    toy: ToyConfig = field(default_factory=ToyConfig)


def test_a_new_section_is_one_field():
    base = ExtendedRunConfig()
    assert list(sections(ExtendedRunConfig)) == ["model", "planner", "algorithm", "sac", "mbpo",
                                                 "dhmbpo", "toy"]
    cfg = apply_overrides(base, ["toy.lr=0.01", "toy.updates=4", "planner.horizon=7"])
    assert cfg.toy == ToyConfig(lr=0.01, updates=4) and cfg.planner.horizon == 7
    assert to_dict(cfg)["toy"] == {"lr": 0.01, "updates": 4}
    assert from_dict(to_dict(cfg), base=ExtendedRunConfig()) == cfg
    with pytest.raises(ConfigError, match="toy.lr: expected positive, got -1.0"):
        apply_overrides(base, ["toy.lr=-1"])
    with pytest.raises(ConfigError, match="toy.nope: unknown setting"):
        apply_overrides(base, ["toy.nope=1"])
    # The plain RunConfig knows no such section.
    with pytest.raises(ConfigError, match="section one of model, planner, algorithm"):
        apply_overrides(RunConfig(), ["toy.lr=0.01"])


def test_cross_field_and_algorithm_checks():
    with pytest.raises(ConfigError, match="algorithm.buffer_capacity: expected at least "
                                          "algorithm.initial_steps \\(500\\)"):
        from_dict({"algorithm": {"initial_steps": 500, "buffer_capacity": 499}})
    assert from_dict({"algorithm": {"initial_steps": 500, "buffer_capacity": 500}})
    with pytest.raises(ConfigError, match="algorithm.name: expected one of .*pets.*random"):
        from_dict({"algorithm": {"name": "dreamer"}})
    with pytest.raises(ConfigError, match="algorithm.steps"):
        from_dict({"algorithm": {"steps": -1}})


def test_allowed_values_come_from_the_constants_module():
    for name in _config.HIDDEN_ACTIVATIONS:
        assert from_dict({"model": {"activation": name}}).model.activation == name
    for name in _config.PLANNERS:
        assert from_dict({"planner": {"name": name}}).planner.name == name
    for mode in _config.PROPAGATION_MODES:
        assert from_dict({"planner": {"propagation": mode}}).planner.propagation == mode


def test_model_n_threads_is_auto_or_a_positive_integer(monkeypatch):
    from fastmbrl.algorithms import pets

    assert RunConfig().model.n_threads == "auto"
    assert apply_overrides(RunConfig(), ["model.n_threads=2"]).model.n_threads == 2
    assert apply_overrides(RunConfig(), ["model.n_threads=auto"]).model.n_threads == "auto"
    for bad, said in (("0", "'auto' or an integer >= 1, got 0"), ("x", "'auto' or an integer, got 'x'"),
                      ("true", "'auto' or an integer, got True")):
        with pytest.raises(ConfigError, match=f"model.n_threads: expected {said}"):
            apply_overrides(RunConfig(), [f"model.n_threads={bad}"])
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    assert pets.model_threads("auto") == 2 and pets.model_threads(1) == 1
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 1)
    assert pets.model_threads("auto") == 1
    cfg = apply_overrides(RunConfig(), ["model.n_threads=2", "model.hidden=[8]"])
    assert pets.make_model(3, 1, cfg, (), seed=0).n_threads == 2


def test_sac_n_threads_is_auto_or_a_positive_integer(monkeypatch):
    from fastmbrl.algorithms import sac

    assert RunConfig().sac.n_threads == "auto"
    assert apply_overrides(RunConfig(), ["sac.n_threads=1"]).sac.n_threads == 1
    with pytest.raises(ConfigError, match="sac.n_threads: expected 'auto' or an integer, got 'x'"):
        apply_overrides(RunConfig(), ["sac.n_threads=x"])
    with pytest.raises(ConfigError, match="sac.n_threads: expected 'auto' or an integer >= 1"):
        apply_overrides(RunConfig(), ["sac.n_threads=0"])
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 2)
    assert sac.update_threads("auto") == 2 and sac.update_threads(1) == 1
    monkeypatch.setattr(_threads.os, "cpu_count", lambda: 1)
    assert sac.update_threads("auto") == 1


def test_constructor_defaults_are_the_configurations():
    """One default per setting: a class built with its defaults is the one a default run builds."""
    import dataclasses
    import inspect

    from fastmbrl import agents, planning
    from fastmbrl.config import MBPOConfig, ModelConfig, PlannerConfig, SACConfig
    from fastmbrl.models import GaussianEnsemble
    from fastmbrl.models.trainer import EnsembleTrainer

    def defaults(fn):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if p.default is not inspect.Parameter.empty}

    cases = [(GaussianEnsemble, ModelConfig), (GaussianEnsemble.fit, ModelConfig),
             (EnsembleTrainer.fit, ModelConfig), (agents.SAC, SACConfig),
             (agents.SAC.update_from, MBPOConfig)]
    cases += [(getattr(planning, name), PlannerConfig) for name in _config.PLANNERS.values()]
    for fn, section in cases:
        fields = {f.name: f.default for f in dataclasses.fields(section)}
        # dtype: a type here, a name there; the trainer's num_elites=None means all members
        shared = set(defaults(fn)) & set(fields) - {"dtype", "name"}
        if fn is EnsembleTrainer.fit:
            shared.discard("num_elites")
        assert shared, fn
        for key in shared:
            assert defaults(fn)[key] == fields[key], (fn, key)
