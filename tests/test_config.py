"""conf/ + config.py + runs.py: every Hydra option composes into a typed Config; bad values fail by name.

Compositions go through Hydra itself (``initialize_config_dir``/``compose``, once per module) and
through ``config.compose_config`` (what the CLI and other tests use). A composition costs ~0.2 s,
so each option is composed once and checked for everything it should carry.
"""

from __future__ import annotations

import itertools

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from grpo_amp import registry
from grpo_amp.study import runs
from grpo_amp.config import (
    CONF_DIR, Config, ConfigError, KLEstimator, KLTarget, LossAgg, Norm, PolicyName, RatioLevel, Std, compose_config, flatten,
    register_configs, to_config,
)

GROUPS = ("variant", "task", "scale", "grpo")
OPTIONS = {g: sorted(p.stem for p in (CONF_DIR / g).glob("*.yaml")) for g in GROUPS}
OPTIONS["policy"] = list(registry.POLICY_NAMES)  # policies come from the registry, not from YAML files
TASK_OF_POLICY = {p.name: registry.FAMILIES[p.family].tasks[0] for p in registry.POLICY_TABLE}


@pytest.fixture(scope="module")
def hydra_compose():
    """compose(overrides) -> Config through Hydra's own initialize_config_dir/compose."""
    from hydra.core.global_hydra import GlobalHydra

    register_configs()

    def _compose(overrides=()):
        GlobalHydra.instance().clear()  # compose_config (used by other tests) leaves its own instance
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return to_config(compose("config", overrides=list(overrides)))

    yield _compose
    GlobalHydra.instance().clear()


def _preset(name: str):
    """A conf/grpo/ preset's keys as its file sets them over those of the presets in its defaults list
    (transformer_control composes practice_token), read from the YAML, not through Hydra."""
    raw = OmegaConf.load(CONF_DIR / "grpo" / f"{name}.yaml")
    merged = OmegaConf.create()
    for parent in raw.get("defaults", []):
        if parent not in ("_self_", "grpo_schema"):
            merged = OmegaConf.merge(merged, _preset(parent))
    return OmegaConf.merge(merged, {k: v for k, v in raw.items() if k != "defaults"})


def _leaves(node, prefix=""):
    """Dotted leaf keys of a plain dict (lists are leaves)."""
    out = {}
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(_leaves(v, key) if isinstance(v, dict) else {key: v})
    return out


def _as_plain(cfg: Config) -> dict:
    return _leaves(OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True))


def test_hydra_offers_exactly_the_registry_policies():
    """policy=<name> options are the registry's table: nothing else to edit when a policy is added."""
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        offered = sorted(o for o in loader.get_group_options("policy") if not o.endswith("_schema"))
    GlobalHydra.instance().clear()
    assert offered == sorted(registry.POLICY_NAMES)
    assert not (CONF_DIR / "policy").exists()
    assert set(PolicyName.__members__) == set(registry.POLICY_NAMES)


def test_every_documented_option_exists():
    """The README's configuration table names options that compose (docs and conf/ agree)."""
    readme = (CONF_DIR.parent / "README.md").read_text()
    for group in ("variant", "task", "scale", "grpo"):
        for option in OPTIONS[group]:
            assert f"`{option}`" in readme, (group, option)


def test_defaults(hydra_compose):
    cfg = hydra_compose()
    assert isinstance(cfg, Config)
    assert cfg.variant.name == "mean_std_ref" and cfg.policy.name is PolicyName.tabular_exact
    assert cfg.task.name == "tabular" and cfg.scale.name == "default"
    # default x tabular sizing (conf/sizing/default_tabular.yaml)
    assert (cfg.task.n_train, cfg.task.n_heldout, cfg.task.n_outputs) == (256, 64, 16)
    assert (cfg.grpo.iterations, cfg.grpo.group_size, cfg.grpo.inner_steps, cfg.grpo.lr) == (12, 8, 12, 0.1)
    assert cfg.grpo.clip_eps is None and cfg.grpo.kl_estimator is KLEstimator.full_vocab
    assert cfg.results == "results" and cfg.seed == 0


@pytest.mark.parametrize("variant", OPTIONS["variant"])
def test_every_variant_composes(hydra_compose, variant):
    cfg = hydra_compose([f"variant={variant}"])
    yaml = OmegaConf.load(CONF_DIR / "variant" / f"{variant}.yaml")
    v = cfg.variant
    assert v.name == variant
    assert isinstance(v.norm, Norm) and isinstance(v.kl, KLTarget) and isinstance(v.std, Std)
    assert (v.norm.value, v.kl.value, v.std.value) == (yaml.norm, yaml.kl, yaml.std)
    assert (v.beta, v.beta_prev, v.eps) == (yaml.beta, yaml.beta_prev, yaml.eps)
    # the name spells the settings: <norm>_<kl>[_eps]
    assert variant.startswith(f"{v.norm.value}_{v.kl.value}")
    assert (v.eps > 0) == variant.endswith("_eps")
    assert (v.beta_prev > 0) == (v.kl is KLTarget.both)


@pytest.mark.parametrize("policy", OPTIONS["policy"])
def test_every_policy_composes_with_its_own_task(hydra_compose, policy):
    cfg = hydra_compose([f"policy={policy}"])
    spec = registry.policy(policy)
    assert cfg.policy.name.value == policy and cfg.policy.family == spec.family
    assert cfg.task.name == TASK_OF_POLICY[policy]  # the policy picks its task
    preset = _preset(spec.grpo)  # ... and its GRPO preset
    assert (cfg.grpo.ratio_level.value, cfg.grpo.loss_agg.value) == (preset.ratio_level, preset.loss_agg)


def test_the_transformer_control_differs_from_the_transformer_only_in_groups_and_steps(hydra_compose):
    """The control is the transformer's GRPO (same loss, G, lr, beta, checkpoint and task) with m groups
    per question and inner steps until the sampled objective stops improving: nothing else may differ."""
    for scale in ("smoke", "default"):
        practice = hydra_compose(["policy=transformer", f"scale={scale}"])
        control = hydra_compose(["policy=transformer_control", f"scale={scale}"])
        differ = {k for k in vars(practice.grpo) if getattr(practice.grpo, k) != getattr(control.grpo, k)}
        assert {"groups_per_question", "inner_tol"} <= differ <= {"groups_per_question", "inner_tol", "max_inner_steps"}
        assert control.grpo.groups_per_question > 1 and control.grpo.inner_tol > 0
        assert control.grpo.max_inner_steps > control.grpo.inner_steps == practice.grpo.inner_steps
        assert control.variant == practice.variant and control.task == practice.task
        assert control.policy.model == practice.policy.model and control.policy.family == "transformer"


def test_a_grpo_preset_on_the_command_line_wins_over_the_policys(hydra_compose):
    cfg = hydra_compose(["policy=tabular_sgd", "grpo=trl_default"])
    assert cfg.grpo.kl_estimator is KLEstimator.k3 and cfg.grpo.clip_eps == 0.2 and cfg.grpo.inner_steps == 1
    assert cfg.grpo.iterations == 12  # sizes still come from the scale's sizing


@pytest.mark.parametrize("policy,task", [("tabular_sgd", "tabular"), ("transformer", "modarith")])
def test_every_task_composes_where_compatible(hydra_compose, policy, task):
    cfg = hydra_compose([f"policy={policy}", f"task={task}"])
    assert cfg.task.name == task
    if task == "modarith":
        assert cfg.task.ops == ["+"] and cfg.task.answer_digits == 2
        assert (cfg.task.noise_a, cfg.task.noise_b) == (0.6, 0.9)
    else:
        assert (cfg.task.p_ref_low, cfg.task.p_ref_high) == (0.02, 0.95)


@pytest.mark.parametrize("scale,policy", list(itertools.product(OPTIONS["scale"], OPTIONS["policy"])))
def test_every_scale_x_policy_composes_with_its_sizing(hydra_compose, scale, policy):
    cfg = hydra_compose([f"scale={scale}", f"policy={policy}"])
    assert cfg.scale.name == scale and cfg.policy.name.value == policy
    sizing = CONF_DIR / "sizing" / f"{scale}_{TASK_OF_POLICY[policy]}.yaml"
    assert sizing.is_file()
    plain = _as_plain(cfg)
    wanted = _leaves(OmegaConf.to_container(OmegaConf.load(sizing)))
    assert wanted, sizing
    for key, value in wanted.items():  # every value of the specialisation reached the Config
        assert plain[key] == value, (key, plain[key], value)
    # the study of the scale is the YAML's
    assert cfg.scale.study == runs.load_study(scale)  # the stages and the Snakefile read the same study


def test_sizing_hand_values(hydra_compose):
    smoke_tab = hydra_compose(["scale=smoke", "policy=tabular_sgd"])
    assert (smoke_tab.task.n_train, smoke_tab.task.n_heldout, smoke_tab.task.n_outputs) == (48, 8, 8)
    assert smoke_tab.grpo.iterations == 5 and smoke_tab.grpo.ratio_level is RatioLevel.sequence
    smoke_tr = hydra_compose(["scale=smoke", "policy=transformer"])
    assert (smoke_tr.task.modulus, smoke_tr.task.n_train, smoke_tr.task.n_heldout) == (7, 36, 13)
    assert smoke_tr.policy.model.n_layer == 1 and smoke_tr.policy.model.n_embd == 32
    assert smoke_tr.grpo.ratio_level is RatioLevel.token and smoke_tr.grpo.loss_agg is LossAgg.sequence_mean
    full_tr = hydra_compose(["scale=full", "policy=transformer"])
    assert full_tr.task.ops == ["+", "*"] and full_tr.task.modulus == 23 and full_tr.tracking.live is True
    full_tab = hydra_compose(["scale=full", "policy=tabular_exact"])
    assert (full_tab.task.n_train, full_tab.task.n_outputs, full_tab.grpo.iterations) == (2048, 32, 30)


def test_every_group_at_once(hydra_compose):
    overrides = ["variant=mean_only_both", "policy=tabular_sgd", "task=tabular", "scale=full",
                 "grpo.kl_estimator=k3", "grpo.clip_eps=0.2", "grpo.group_size=16", "variant.beta=0.5",
                 "seed=3", "run_name=mean_only_both-beta0.5"]
    cfg = hydra_compose(overrides)
    assert cfg.variant.name == "mean_only_both" and cfg.variant.norm is Norm.mean_only
    assert cfg.variant.kl is KLTarget.both and cfg.variant.beta == 0.5 and cfg.variant.beta_prev == 1.0
    assert cfg.policy.name is PolicyName.tabular_sgd and cfg.task.name == "tabular" and cfg.scale.name == "full"
    assert cfg.task.n_train == 2048  # full_tabular sizing
    assert cfg.grpo.kl_estimator is KLEstimator.k3 and cfg.grpo.clip_eps == 0.2 and cfg.grpo.group_size == 16
    assert cfg.seed == 3 and cfg.run_name == "mean_only_both-beta0.5"
    # compose_config is the same composition
    assert compose_config(overrides) == cfg


# --------------------------------------------------------------------------- bad values
BAD = [
    (["variant.beta=0"], ValueError, "variant.beta"),
    (["variant.beta=-1"], ValueError, "variant.beta"),
    (["variant.eps=-1"], ValueError, "variant.eps"),
    (["grpo.group_size=1"], ValueError, "grpo.group_size"),
    (["grpo.inner_steps=0"], ValueError, "grpo.inner_steps"),
    (["variant=nope"], HydraException, "variant/nope"),
    (["grpo.kl_estimator=k9"], HydraException, "grpo.kl_estimator"),
    (["variant.norm=std_only"], HydraException, "variant.norm"),
    (["variant=mean_std_both", "variant.beta_prev=0"], ValueError, "variant.beta_prev"),
    (["variant.kl=both"], ValueError, "variant.beta_prev"),  # both with the default beta_prev = 0
    (["variant=mean_std_mirror", "variant.beta_prev=1"], ValueError, "variant.beta_prev"),
    (["policy=transformer", "task=tabular"], ValueError, "task"),
    (["variant.beta=abc"], HydraException, "variant.beta"),
]


@pytest.mark.parametrize("overrides,error,name", BAD, ids=[" ".join(b[0]) for b in BAD])
def test_bad_values_fail_naming_the_field(overrides, error, name):
    with pytest.raises(error) as info:
        compose_config(overrides)
    assert name in str(info.value)


def test_bad_enum_message_lists_the_choices():
    with pytest.raises(HydraException) as info:
        compose_config(["grpo.kl_estimator=k9"])
    cause = str(info.value.__cause__)
    assert "k9" in cause and all(k in cause for k in ("full_vocab", "k1", "k3"))
    assert isinstance(info.value.__cause__, OmegaConfBaseException)


@pytest.mark.parametrize("overrides", [["grpo.kl_estimator=exact"], ["policy=transformer", "grpo.kl_estimator=exact"],
                                       ["run_name=mean_std_ref-klexact", "grpo.kl_estimator=exact"]])
def test_the_old_estimator_name_exact_fails_in_one_line_naming_full_vocab(overrides):
    """``exact`` was renamed ``full_vocab`` (not the sequence KL on a transformer): the old name is a
    ConfigError naming the field and the new value, one line, not a silent alias."""
    with pytest.raises(ConfigError) as info:
        compose_config(overrides)
    message = str(info.value)
    assert "\n" not in message and message.startswith("grpo.kl_estimator must be full_vocab")
    assert "renamed full_vocab" in message and "got 'exact'" in message


def test_policy_transformer_with_tabular_task_names_both():
    with pytest.raises(ValueError, match=r"task must be modarith or file or reasoning_gym for policy=transformer; got 'tabular'"):  # noqa
        compose_config(["policy=transformer", "task=tabular"])


def test_flatten_has_dotted_keys():
    cfg = compose_config(["variant=mean_std_both", "variant.eps=0.01", "variant.beta=2", "grpo.group_size=4",
                          "inputs.pos=a.csv", "outputs.predict=b.csv"])
    flat = flatten(cfg)
    assert flat["variant.beta"] == 2.0 and flat["variant.kl"] == "both" and flat["variant.norm"] == "mean_std"
    assert flat["variant.eps"] == 0.01 and flat["variant.beta_prev"] == 1.0 and flat["grpo.group_size"] == 4
    assert flat["grpo.kl_estimator"] == "full_vocab" and flat["policy.name"] == "tabular_exact"
    assert flat["grpo.clip_eps"] is None and flat["policy.model.n_layer"] == 2
    assert all(isinstance(v, (str, int, float, bool, list, type(None))) for v in flat.values())  # enums as str
    assert not any(k.startswith("scale.study") for k in flat) and not any(k.startswith(("inputs", "outputs")) for k in flat)
    assert not any(isinstance(v, dict) for v in flat.values())


# --------------------------------------------------------------------------- runs.py
EXPECTED_RUNS = {
    ("smoke", "tabular_exact"): ["mean_std_ref", "mean_std_mirror", "mean_std_both", "mean_only_ref",
                                 "mean_std_ref-beta0.5", "mean_std_ref-beta2"],
    ("smoke", "tabular_sgd"): ["mean_std_ref", "mean_std_mirror", "mean_std_both", "mean_only_ref",
                               "mean_std_ref-beta0.5", "mean_std_ref-beta2", "mean_std_ref-G32", "mean_std_ref-M1",
                               "mean_std_ref-estdr_grpo", "mean_std_ref-estdapo", "mean_std_ref-estdapo_uncapped"],
    ("smoke", "tabular_r2"): ["mean_std_ref", "mean_std_ref-estdr_grpo", "mean_std_ref-estdapo",
                              "mean_std_ref-estdapo_uncapped"],
    ("smoke", "transformer"): ["mean_std_ref", "mean_std_ref-sign1"],  # C2 on the signed task
    ("smoke", "tabular_r1"): ["mean_std_ref", "mean_std_mirror", "mean_std_both", "mean_only_ref"],
    ("smoke", "tabular_r4"): ["mean_std_ref", "mean_std_ref-m4"],
    ("default", "tabular_r3"): ["mean_std_ref", "mean_std_mirror", "mean_std_both", "mean_only_ref",
                                "mean_only_mirror", "mean_only_both", "mean_std_ref_eps",
                                "mean_std_ref-M1", "mean_std_ref-M4", "mean_std_ref-M32"],
    ("default", "tabular_r4"): ["mean_std_ref", "mean_std_ref-m4", "mean_std_ref-m16"],
    ("default", "tabular_exact"): ["mean_std_ref", "mean_std_mirror", "mean_std_both", "mean_only_ref",
                                   "mean_only_mirror", "mean_only_both", "mean_std_ref_eps",
                                   "mean_std_ref-beta0.25", "mean_std_ref-beta0.5", "mean_std_ref-beta2",
                                   "mean_std_ref-beta4"],
    ("default", "transformer"): ["mean_std_ref", "mean_std_mirror", "mean_std_both", "mean_only_ref",
                                 "mean_std_ref-beta0.25", "mean_std_ref-beta0.5", "mean_std_ref-beta2",
                                 "mean_std_ref-beta4",
                                 # E6: the transformer's own estimator list (study.sweep_values_of), not all seven
                                 "mean_std_ref-estdr_grpo", "mean_std_ref-estrloo", "mean_std_ref-estdapo",
                                 "mean_std_ref-sign1"],  # C2 on the signed task (task.plus_sign, its own pi_ref)
    # TRL: its lr sweep around mean_std_mirror (beta = 0), its estimators around mean_std_ref
    ("default", "trl"): ["mean_std_ref", "mean_std_mirror-lr0.0005", "mean_std_mirror-lr0.002",
                         "mean_std_ref-estdr_grpo", "mean_std_ref-estbatch"],
    ("smoke", "trl"): ["mean_std_ref", "mean_std_ref-estdr_grpo"],
}


@pytest.mark.parametrize("scale,policy", list(EXPECTED_RUNS))
def test_study_runs_by_hand(scale, policy):
    assert runs.study_runs(scale, policy) == EXPECTED_RUNS[(scale, policy)]


def test_study_runs_practice_sweeps():
    sgd = runs.study_runs("default", "tabular_sgd")
    assert sgd == EXPECTED_RUNS[("default", "tabular_exact")] + [
        "mean_std_ref-G2", "mean_std_ref-G4", "mean_std_ref-G16", "mean_std_ref-G64",
        "mean_std_ref-M1", "mean_std_ref-M4", "mean_std_ref-M32",
        "mean_std_ref-klk1", "mean_std_ref-klk3", "mean_std_ref-clip0.2",
        *[f"mean_std_ref-est{e}" for e in ("trl_default", "verl", "dr_grpo", "rloo", "batch", "dapo", "dapo_uncapped",
                                                 "pass_k")]]
    full_tr = runs.study_runs("full", "transformer")
    assert len(full_tr) == 6 + 6 + 4 + 3 + 2 + 1 + 7 + 1 and len(set(full_tr)) == len(full_tr)  # every estimator at full
    assert full_tr[-1] == "mean_std_ref-sign1"  # and C2's signed task
    full_exact = runs.study_runs("full", "tabular_exact")
    assert not any(tag in r for r in full_exact for tag in ("-G", "-M", "-kl", "-clip"))  # no practice knobs
    assert runs.study_runs("smoke", "no_such_policy") == []
    with pytest.raises(ValueError, match="unknown scale 'huge'"):
        runs.study_runs("huge", "tabular_exact")


def test_run_names_round_trip_through_hydra(hydra_compose):
    names = sorted({r for s in OPTIONS["scale"] for p in ("tabular_sgd", "transformer") for r in runs.study_runs(s, p)})
    assert len(names) == 7 + 6 + 5 + 3 + 2 + 1 + 8 + 1  # variants, betas, Gs, Ms, KL estimators, clips, advantage
    # estimators, the signed task
    for name in names:
        variant, sweep, value = runs.parse_run(name)
        assert runs.run_name(variant, None if sweep == "variant" else sweep,
                             None if value is None else (float(value) if sweep in ("beta", "clip_eps") else
                                                         int(value) if sweep in ("group_size", "inner_steps") else value)
                             ) == name
        cfg = hydra_compose(["policy=tabular_sgd", *runs.run_overrides(name)])
        assert cfg.run_name == name and cfg.variant.name == variant
        got = {"beta": cfg.variant.beta, "group_size": cfg.grpo.group_size, "inner_steps": cfg.grpo.inner_steps,
               "kl_estimator": cfg.grpo.kl_estimator.value, "clip_eps": cfg.grpo.clip_eps,
               "estimator": cfg.estimator.name.value, "plus_sign": cfg.task.plus_sign}
        if sweep == "variant":
            continue
        want = {"beta": float, "group_size": int, "inner_steps": int, "kl_estimator": str, "clip_eps": float,
                "estimator": str, "plus_sign": lambda v: bool(int(v))}[sweep](value)
        assert got[sweep] == want, (name, got)


def test_seeds_repeat_only_sampled_policies():
    study = runs.load_study("default")
    assert study.seeds == 3
    assert runs.seeds_of(study, "tabular_sgd") == 3 and runs.seeds_of(study, "transformer") == 3
    assert runs.seeds_of(study, "tabular_exact") == 1 and runs.seeds_of(study, "tabular_r1") == 1


@pytest.mark.parametrize("bad,field", [({"seeds": 0}, "scale.study.seeds"), ({"policies": ["nope"]}, "scale.study.policies"),
                                       ({"sweeps_of": {"tabular_exact": ["group_size"]}}, "scale.study.sweeps_of"),
                                       ({"one_job_per_policy": ["tabular", "tabluar"]}, "scale.study.one_job_per_policy")])
def test_a_bad_study_fails_naming_the_field(tmp_path, bad, field):
    scale = tmp_path / "scale"
    scale.mkdir()
    study = {"policies": ["tabular_exact"], "variants": ["mean_std_ref"], **bad}
    OmegaConf.save({"name": "mine", "study": study}, scale / "mine.yaml")
    with pytest.raises(ValueError, match=field):
        runs.load_study("mine", conf_dir=tmp_path)


@pytest.mark.parametrize("where", ["variants", "sweep_variant_of"])
def test_a_study_naming_an_unknown_variant_fails_naming_it(tmp_path, where):
    (tmp_path / "scale").mkdir()
    (tmp_path / "variant").mkdir()
    (tmp_path / "variant" / "mean_std_ref.yaml").write_text("name: mean_std_ref\n")
    study = {"policies": ["trl"], "variants": ["mean_std_ref"]}
    study.update({"variants": ["mean_std_ref", "nope"]} if where == "variants" else
                 {"sweep_variant_of": {"trl": {"lr": "nope"}}})
    OmegaConf.save({"name": "mine", "study": study}, tmp_path / "scale" / "mine.yaml")
    with pytest.raises(ValueError, match=f"study.{where}.*unknown variant 'nope'"):
        runs.load_study("mine", conf_dir=tmp_path)


def test_a_policys_own_sweep_base_need_not_be_one_of_its_variants():
    """full: trl runs TRL's default (beta = 0, kl=mirror) only in its lr sweep, never as a plain variant,
    so no C3 check sees a penalty TRL does not apply."""
    names = runs.runs_of_study(runs.load_study("full"), "trl")
    assert names == ["mean_std_ref", "mean_std_mirror-lr0.0001", "mean_std_mirror-lr0.0003", "mean_std_mirror-lr0.001",
                     "mean_std_ref-estdr_grpo", "mean_std_ref-estbatch",  # the estimator sweep keeps the base variant
                     "mean_std_ref-sign1"]
    assert [runs.parse_run(n)[1] for n in names] == ["variant", "lr", "lr", "lr", "estimator", "estimator", "plus_sign"]


@pytest.mark.parametrize("values_of, field", [
    ({"tabular_sgd": {"nope": [1]}}, r"scale.study.sweep_values_of.tabular_sgd must be one of that policy's sweeps"),
    ({"tabular_exact": {"estimator": ["dr_grpo"]}}, r"scale.study.sweep_values_of.tabular_exact must be"),
    ({"tabular_sgd": {"estimator": ["dr_grpo", "nope"]}}, r"scale.study.sweep_values_of.tabular_sgd.estimator must be "
                                                          r"one of grpo, .*; got 'nope'"),
    ({"tabular_sgd": {"beta": [0.5, "big"]}}, r"scale.study.sweep_values_of.tabular_sgd.beta must be a value of the "
                                               r"beta sweep .*; got 'big'"),
    ({"nope": {"beta": [0.5]}}, r"scale.study.sweep_values_of must be one of tabular_exact"),
    ({"trl": {"estimator": ["dr_grpo", "rloo"]}}, r"study.sweep_values_of.trl.estimator: policy=trl: "
                                                  r"estimator.name=rloo has no TRL 1.16 counterpart")])
def test_a_bad_per_policy_sweep_value_fails_in_one_line_naming_the_field(tmp_path, values_of, field):
    (tmp_path / "scale").mkdir()
    (tmp_path / "variant").mkdir()
    (tmp_path / "variant" / "mean_std_ref.yaml").write_text("name: mean_std_ref\n")
    study = {"policies": ["tabular_sgd", "trl"], "variants": ["mean_std_ref"], "sweep_values_of": values_of,
             "sweeps_of": {"trl": ["estimator"]}}
    OmegaConf.save({"name": "mine", "study": study}, tmp_path / "scale" / "mine.yaml")
    with pytest.raises(ValueError, match=field) as exc:
        runs.load_study("mine", conf_dir=tmp_path)
    assert "\n" not in str(exc.value)


def test_per_policy_sweep_values_replace_the_studys_for_that_policy_only(tmp_path):
    (tmp_path / "scale").mkdir()
    (tmp_path / "variant").mkdir()
    (tmp_path / "variant" / "mean_std_ref.yaml").write_text("name: mean_std_ref\n")
    study = {"policies": ["tabular_sgd", "transformer", "trl"], "variants": ["mean_std_ref"],
             "beta_sweep": [2.0], "advantage_sweep": ["rloo", "verl"],
             "sweep_values_of": {"transformer": {"estimator": ["dapo"], "beta": [0.5, 4.0]}},
             "sweeps_of": {"tabular_sgd": ["beta", "estimator"], "transformer": ["beta", "estimator"], "trl": ["beta"]}}
    OmegaConf.save({"name": "mine", "study": study}, tmp_path / "scale" / "mine.yaml")
    s = runs.load_study("mine", conf_dir=tmp_path)  # trl runs no estimator sweep: rloo/verl are not refused for it
    assert runs.runs_of_study(s, "tabular_sgd") == ["mean_std_ref", "mean_std_ref-beta2", "mean_std_ref-estrloo",
                                                     "mean_std_ref-estverl"]
    assert runs.runs_of_study(s, "transformer") == ["mean_std_ref", "mean_std_ref-beta0.5", "mean_std_ref-beta4",
                                                     "mean_std_ref-estdapo"]
    assert runs.runs_of_study(s, "trl") == ["mean_std_ref", "mean_std_ref-beta2"]
    study["sweeps_of"]["trl"] = ["estimator"]  # now trl would run the study's rloo: refused, naming the list
    OmegaConf.save({"name": "mine", "study": study}, tmp_path / "scale" / "mine.yaml")
    with pytest.raises(ValueError, match="study.advantage_sweep: policy=trl: estimator.name=rloo"):
        runs.load_study("mine", conf_dir=tmp_path)


def test_run_overrides_by_hand():
    assert runs.run_overrides("mean_std_ref") == ["variant=mean_std_ref", "run_name=mean_std_ref"]
    assert runs.run_overrides("mean_only_ref-beta0.5") == ["variant=mean_only_ref", "run_name=mean_only_ref-beta0.5",
                                                          "variant.beta=0.5"]
    assert runs.run_overrides("mean_std_ref-G32")[-1] == "grpo.group_size=32"
    assert runs.run_overrides("mean_std_ref-M16")[-1] == "grpo.inner_steps=16"
    assert runs.run_overrides("mean_std_ref-klk3")[-1] == "grpo.kl_estimator=k3"
    assert runs.run_overrides("mean_std_ref-clip0.2")[-1] == "grpo.clip_eps=0.2"
    assert runs.run_overrides("mean_std_ref-m4")[-1] == "grpo.groups_per_question=4"
    assert runs.run_overrides("mean_std_mirror-lr1e-05")[-1] == "grpo.lr=1e-05"  # :g writes small lrs so
    assert runs.run_name("mean_std_mirror", "lr", 1e-5) == "mean_std_mirror-lr1e-05"
    assert runs.run_name("mean_std_ref", "beta", 2.0) == "mean_std_ref-beta2"
    assert runs.parse_run("mean_std_ref-beta0.25") == ("mean_std_ref", "beta", "0.25")
    assert runs.parse_run("mean_only_both") == ("mean_only_both", "variant", None)


@pytest.mark.parametrize("name", ["", "mean_std_ref-", "mean_std_ref-beta", "mean_std_ref-foo1", "mean-std-ref",
                                  "mean_std_ref-beta0.5-G4", "mean std", "mean_std_ref-G-3", "../x",
                                  "mean_std_ref-beta1e-3", "mean_std_mirror-lr1e"])
def test_parse_run_errors(name):
    with pytest.raises(ValueError, match="is not VARIANT or VARIANT-"):
        runs.parse_run(name)
    with pytest.raises(ValueError):
        runs.run_overrides(name)
