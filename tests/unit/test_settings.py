import pytest

from apps.jaxfl.settings import ConfigError, NodeSettings, RunSettings, check_partition

GOOD = {
    "num-server-rounds": 3,
    "learning-rate": 0.1,
    "batch-size": 64,
    "local-epochs": 1,
    "fraction-train": 1.0,
    "fraction-evaluate": 0.5,
    "min-nodes": 2,
    "round-timeout": 600,
    "num-partitions": 0,
    "dataset": "ylecun/mnist",
    "output-dir": "outputs",
    "seed": 0,
}


def test_the_shipped_run_config_parses():
    import tomllib

    from tests.support.results import REPO

    shipped = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["flwr"]["app"]["config"]
    settings = RunSettings.parse(shipped)
    assert settings.dataset == "ylecun/mnist" and settings.num_partitions == 0


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("learning-rate", "abc", "'learning-rate' must be a number, got 'abc'"),
        ("learning-rate", -1.0, "'learning-rate' must be >= "),
        ("batch-size", 2.5, "'batch-size' must be an integer"),
        ("batch-size", True, "'batch-size' must be an integer"),
        ("fraction-train", 1.5, "'fraction-train' must be between 0.0 and 1.0"),
        ("num-server-rounds", 0, "'num-server-rounds' must be >= 1"),
        ("dataset", "", "'dataset' must be a non-empty string"),
        ("round-timeout", 0, "'round-timeout' must be >= 1.0"),
    ],
)
def test_bad_run_config_values_fail_with_one_line_naming_the_key(key, value, expected):
    with pytest.raises(ConfigError) as err:
        RunSettings.parse({**GOOD, key: value})
    message = str(err.value)
    assert expected in message
    assert "--run-config" in message and "\n" not in message


def test_missing_key_is_named():
    config = dict(GOOD)
    del config["batch-size"]
    with pytest.raises(ConfigError, match="missing 'batch-size'"):
        RunSettings.parse(config)


def test_numeric_strings_are_accepted():
    assert RunSettings.parse({**GOOD, "learning-rate": "0.05"}).learning_rate == 0.05


def test_node_config():
    node = NodeSettings.parse({"partition-id": 2, "dataset": "/data/x.parquet"})
    assert (node.partition_id, node.num_partitions, node.dataset) == (2, None, "/data/x.parquet")
    assert (node.cache_dir, node.shared_cache_dir, node.expect_gpu) == (None, None, False)
    # What the stack's SuperNode entrypoint adds (Flower hands TOML's `true` over as a bool).
    stack = NodeSettings.parse({"partition-id": 2, "cache-dir": "/home/flwr/cache/node-2",
                                "shared-cache-dir": "/home/flwr/cache", "expect-gpu": True})
    assert (stack.cache_dir, stack.shared_cache_dir, stack.expect_gpu) == (
        "/home/flwr/cache/node-2", "/home/flwr/cache", True)
    with pytest.raises(ConfigError, match="node config is missing 'partition-id'.*--node-config"):
        NodeSettings.parse({})
    with pytest.raises(ConfigError, match="'partition-id' must be >= 0"):
        NodeSettings.parse({"partition-id": -1})


def test_the_node_config_decides_the_split_unless_the_run_config_or_own_data_says_otherwise():
    node = NodeSettings.parse({"partition-id": 1, "num-partitions": 10})
    assert node.partitions(0, 4) == 10  # the SuperLink's members (node config) win over the ServerApp's count
    assert node.partitions(6, 4) == 6  # an explicit run config num-partitions wins
    assert NodeSettings.parse({"partition-id": 1}).partitions(0, 4) == 4  # plain Flower: the ServerApp's count
    site = NodeSettings.parse({"partition-id": 1, "num-partitions": 3, "own-data": "true", "dataset": "/d.parquet"})
    assert site.own_data and site.partitions(12, 12) == 3


def test_partition_out_of_range_names_the_fix():
    check_partition(2, 3)
    with pytest.raises(ConfigError) as err:
        check_partition(3, 3)
    assert "partition-id 3 is outside [0, 3)" in str(err.value) and "num-partitions" in str(err.value)
