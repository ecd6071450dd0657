import pytest

from valle2.config import (
    CONFIGS_DIR, Config, ConfigError, config_from_dict, config_to_dict, dump_config, load_config,
)


@pytest.mark.parametrize("name", ["debug", "small", "paper"])
def test_recipes_load_and_round_trip(name):
    cfg = load_config(name)
    assert cfg.model.size == name
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert load_config(CONFIGS_DIR / f"{name}.yaml") == cfg


def test_paper_recipe_follows_the_paper():
    cfg = load_config("paper")
    assert (cfg.optim.lr, cfg.optim.warmup_steps, cfg.optim.schedule) == (5e-4, 32000, "linear")
    assert (cfg.codec.type, cfg.codec.bandwidth, cfg.model.group_size) == ("encodec", 6.0, 2)


def test_overrides_are_typed():
    cfg = load_config("debug", ["train.steps=7", "optim.lr=3e-4", "data.train=[a, b]", "data.valid=c",
                                "optim.clip_norm=null", "optim.betas=[0.8, 0.99]", "train.models=ar"])
    assert cfg.train.steps == 7 and cfg.optim.lr == 3e-4 and cfg.optim.clip_norm is None
    assert cfg.data.train == ("a", "b") and cfg.data.valid == ("c",)
    assert cfg.optim.betas == (0.8, 0.99) and cfg.train.models == "ar"
    assert isinstance(load_config(None, ["optim.lr=1"]).optim.lr, float)


@pytest.mark.parametrize("override, message", [
    ("train.stepz=3", "unknown config key 'train.stepz'; did you mean 'steps'"),
    ("trian.steps=3", "unknown config key 'trian.steps'; did you mean 'train'"),
    ("train.steps=many", "train.steps is 'many'; expected int"),
    ("train.steps=2.5", "train.steps is 2.5; expected int"),
    ("train.models=all", "expected one of 'ar', 'nar', 'both'"),
    ("optim.betas=[0.9]", "optim.betas is [0.9]; expected a list of 2 numbers"),
    ("model.group_size=3", "model.group_size is 3; must be one of 1, 2, 4, 8"),
    ("train.steps", "not key=value"),
    ("export.top_p=0", "export.top_p is 0.0; must be in"),
    ("export.temperature=-1", "export.temperature is -1.0; must be > 0"),
    ("export.nar_temperature=0", "export.nar_temperature is 0.0; must be > 0"),
    ("export.post_filter_strength=1.5", "export.post_filter_strength is 1.5; must be in [0, 1]"),
    ("export.nar_decoding=beam", "expected one of 'greedy', 'min_distortion'"),
    ("train=3", "train must be a mapping"),
])
def test_bad_overrides_name_the_key_and_value(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_config("debug", [override])


def test_unknown_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config 'nope' not found"):
        load_config("nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("train:\n  steps: 3\nnonsense: 1\n")
    with pytest.raises(ConfigError, match="unknown config key 'nonsense'"):
        load_config(bad)


def test_dump_is_loadable(tmp_path):
    cfg = load_config("small", ["train.steps=11"])
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg
    assert Config().train.steps == 100


def test_codec_section_resolves_codecs():
    from valle2.config import BUNDLED_CODECS, CodecConfig, build_codec

    with pytest.raises(ConfigError, match="codec.path 'nope' is neither a folder nor a bundled codec"):
        build_codec(CodecConfig(type="valle2-mel", path="nope"))
    with pytest.raises(ConfigError, match="codec.name_or_path is not set"):
        build_codec(CodecConfig(type="encodec"))
    small = load_config("small").codec
    if not (BUNDLED_CODECS / small.path).is_dir():
        pytest.skip(f"bundled codec {small.path} not in this tree")
    codec = build_codec(small)
    assert (codec.n_codebooks, codec.frame_rate) == (8, 75.0)
