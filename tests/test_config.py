"""Run configs: YAML loading, validation, the settings hash, the shipped examples."""
import pytest
import yaml

from mftma.errors import DataFileError, InputError
from mftma.experiments.config import RunConfig, config_names, load_config
from mftma.experiments.models import MODEL_NAMES


def test_round_trip_through_yaml(tmp_path):
    config = RunConfig().replace(training={"checkpoints": [3, 1], "milestones": [5]}, model={"options": {"hidden": 8}})
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config.to_dict()))
    loaded = load_config(path)
    assert loaded == config
    assert loaded.training.checkpoints == (1, 3)
    assert loaded.settings_hash() == config.settings_hash()


def test_missing_keys_take_defaults_and_yaml_strings_become_numbers(tmp_path):
    path = tmp_path / "short.yaml"
    path.write_text("training:\n  lr: 1e-3\n  epochs: 5\n")
    config = load_config(path)
    assert config.training.lr == 0.001 and config.training.epochs == 5
    assert config.data == RunConfig().data


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("trainer: {}", r"unknown config section\(s\) \['trainer'\]"),
        ("training: {epoch: 3}", r"unknown key\(s\) \['epoch'\] in config section 'training'"),
        ("corruption: {fraction: 1.2}", r"must lie in \[0, 1\], got 1.2"),
        ("corruption: {fraction: -0.1}", r"must lie in \[0, 1\]"),
        ("data: {name: mnist2d}", "data.name must be one of"),
        ("model: {name: vgg19}", "model.name must be one of"),
        ("corruption: {kind: blur}", "corruption.kind must be one of"),
        ("training: {epochs: 2.5}", "training.epochs must be an integer"),
        ("training: {lr: fast}", "training.lr must be a number"),
        ("training: {optimizer: rmsprop}", "training.optimizer must be one of"),
        ("training: {schedule: cyclic}", "training.schedule must be one of"),
        ("training: {checkpoints: some}", "training.checkpoints"),
        ("training: {device: tpu}", "training.device"),
        ("cache: {subsets: [train]}", "cache.subsets entry must be one of"),
        ("cache: {M: 1}", "cache.M must be at least 2"),
        ("model: {width: 0}", "model.width must be positive"),
        ("[1, 2]", "the config must be a mapping"),
    ],
)
def test_invalid_settings_are_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_unreadable_files_raise_data_file_error(tmp_path):
    with pytest.raises(DataFileError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "broken.yaml").write_text("training: [unclosed")
    with pytest.raises(DataFileError, match="cannot read"):
        load_config(tmp_path / "broken.yaml")


def test_settings_hash_covers_what_changes_the_weights():
    base = RunConfig()
    same = [base.replace(training={"device": "cpu", "num_threads": 3, "checkpoints": "log"}),
            base.replace(cache={"M": 20}), RunConfig.from_dict(base.to_dict())]
    assert {config.settings_hash() for config in same} == {base.settings_hash()}
    changed = [base.replace(training={"lr": 0.1}), base.replace(corruption={"fraction": 0.3}),
               base.replace(data={"seed": 1}), base.replace(model={"width": 2}),
               base.replace(training={"seed": 1})]
    assert len({config.settings_hash() for config in changed} | {base.settings_hash()}) == len(changed) + 1
    assert len(base.settings_hash()) == 16


@pytest.mark.parametrize("name", ["mnist1d", "tiny", "digits", "cifar100_vgg16"])
def test_shipped_configs_load_and_name_known_models(name):
    assert name in config_names()
    config = load_config(name)
    assert config.model.name in MODEL_NAMES
