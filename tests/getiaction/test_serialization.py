"""Config <-> plain data <-> YAML: property-based round trips and one clear error per bad input."""

from __future__ import annotations

import dataclasses
import enum
import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from getiaction.errors import SerializationError
from getiaction.export.serialization import from_plain, from_yaml, to_plain, to_yaml
from getiaction.policies import DummyConfig

# Under pytest's default ("prepend") import mode this module is imported as a top-level module,
# so its dataclasses' class_path starts with __name__'s first segment; allow exactly that.
ALLOWED = ("getiaction", __name__.split(".")[0])
EXAMPLES = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Color(enum.StrEnum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


@dataclass
class Leaf:
    name: str = "leaf"
    scale: float = 1.0


@dataclass
class Node:
    """A recursive config (a tree of arbitrary depth)."""

    value: int = 0
    children: list[Node] = field(default_factory=list)


@dataclass
class Arrays:
    """One array per way of declaring its dtype."""

    typed: npt.NDArray[np.float32]  # the dtype comes from the type hint alone
    meta: np.ndarray = field(metadata={"dtype": "float32"})  # ... from field metadata alone
    f32: np.ndarray = field(default_factory=lambda: np.zeros(3, dtype=np.float32))  # ... from defaults
    i64: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.int64))
    f64: np.ndarray = field(default_factory=lambda: np.zeros(2, dtype=np.float64))


@dataclass
class Config:
    arrays: Arrays
    color: Color = Color.RED
    shape: tuple[int, ...] = (7,)
    pair: tuple[int, str] = (1, "a")
    leaves: list[Leaf] = field(default_factory=list)
    by_name: dict[str, Leaf] = field(default_factory=dict)
    maybe_leaf: Leaf | None = None
    maybe_int: int | None = None
    tree: Node = field(default_factory=Node)


@dataclass
class Encoder:
    norm: Any = None


@dataclass
class Holder:
    encoder: Encoder = field(default_factory=Encoder)
    leaves: list[Any] = field(default_factory=list)
    by_name: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# strategies
# --------------------------------------------------------------------------------------------
texts = st.text(max_size=12)
# dict keys may be anything, including the words the plain form itself uses
keys = texts | st.sampled_from(["class_path", "init_args", "null", "true", "1.5", "~", "- a", "a: b"])
floats = st.floats(allow_nan=False)  # NaN != NaN; infinities round-trip through YAML
array_shapes = st.one_of(st.just((0,)), hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=4))


def arrays(dtype: Any) -> st.SearchStrategy[np.ndarray]:
    elements = st.floats(allow_nan=False, width=np.dtype(dtype).itemsize * 8) if dtype != np.int64 else None
    return hnp.arrays(dtype, array_shapes, elements=elements)


leaves = st.builds(Leaf, name=texts, scale=floats)
nodes = st.recursive(
    st.builds(Node, value=st.integers(), children=st.just([])),
    lambda children: st.builds(Node, value=st.integers(), children=st.lists(children, max_size=3)),
    max_leaves=12,
)
configs = st.builds(
    Config,
    arrays=st.builds(
        Arrays,
        typed=arrays(np.float32),
        meta=arrays(np.float32),
        f32=arrays(np.float32),
        i64=arrays(np.int64),
        f64=arrays(np.float64),
    ),
    color=st.sampled_from(Color),
    shape=st.lists(st.integers(), max_size=4).map(tuple),
    pair=st.tuples(st.integers(), texts),
    leaves=st.lists(leaves, max_size=3),
    by_name=st.dictionaries(keys, leaves, max_size=3),
    maybe_leaf=st.none() | leaves,
    maybe_int=st.none() | st.integers(),
    tree=nodes,
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def assert_same(actual: Any, expected: Any, path: str = "config") -> None:
    """Field-by-field equality that also demands equal types (tuple stays tuple) and array dtypes."""
    assert type(actual) is type(expected), f"{path}: {type(actual).__name__} != {type(expected).__name__}"
    if dataclasses.is_dataclass(expected):
        for f in dataclasses.fields(expected):
            assert_same(getattr(actual, f.name), getattr(expected, f.name), f"{path}.{f.name}")
    elif isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype, f"{path}: dtype {actual.dtype} != {expected.dtype}"
        assert np.array_equal(actual, expected), f"{path}: {actual!r} != {expected!r}"
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), f"{path}: length {len(actual)} != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_same(a, e, f"{path}[{i}]")
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), f"{path}: keys {list(actual)} != {list(expected)}"
        for key in expected:
            assert_same(actual[key], expected[key], f"{path}.{key}")
    else:
        assert actual == expected, f"{path}: {actual!r} != {expected!r}"


def assert_plain(value: Any, path: str = "plain") -> None:
    """Only what a safe YAML dumper (and JSON) can hold: dict/list/str/int/float/bool/None."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, str), f"{path}: key {key!r}"
            assert_plain(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            assert_plain(item, f"{path}[{i}]")
    else:
        assert type(value) in (str, int, float, bool, type(None)), f"{path}: {type(value).__name__}"


def depth(node: Node) -> int:
    return 1 + max((depth(child) for child in node.children), default=0)


def sample_config() -> Config:
    return Config(
        arrays=Arrays(
            typed=np.array([0.1, 0.2], dtype=np.float32),
            meta=np.array([[0.3], [0.4]], dtype=np.float32),
            f32=np.array([0.5], dtype=np.float32),
            i64=np.array([2**40], dtype=np.int64),
            f64=np.array([0.1], dtype=np.float64),
        ),
        color=Color.GREEN,
        shape=(3, 2),
        pair=(5, "x"),
        leaves=[Leaf("a", 2.0)],
        by_name={"k": Leaf("b", -1.5)},
        maybe_leaf=Leaf(),
        maybe_int=4,
        tree=Node(1, [Node(2, [Node(3)])]),
    )


# --------------------------------------------------------------------------------------------
# round trips
# --------------------------------------------------------------------------------------------
@EXAMPLES
@given(configs)
def test_plain_round_trip(config: Config) -> None:
    plain = to_plain(config)
    assert_plain(plain)
    assert plain["class_path"] == f"{__name__}.Config"
    assert_same(from_plain(plain, allowed_packages=ALLOWED), config)


@EXAMPLES
@given(configs)
def test_yaml_round_trip(config: Config) -> None:
    text = to_yaml(config)
    assert "!!" not in text  # no python tags: a safe loader reads it
    assert_same(from_yaml(text, allowed_packages=ALLOWED), config)


@EXAMPLES
@given(nodes)
def test_recursive_round_trip(tree: Node) -> None:
    back = from_yaml(to_yaml(tree), allowed_packages=ALLOWED)
    assert_same(back, tree)
    assert depth(back) == depth(tree)


def test_deep_tree_round_trips() -> None:
    tree = Node(0)
    for value in range(1, 40):
        tree = Node(value, [tree, Node(-value)])
    back = from_yaml(to_yaml(tree), allowed_packages=ALLOWED)
    assert depth(back) == 40
    assert_same(back, tree)


@EXAMPLES
@given(
    st.builds(
        DummyConfig,
        action_shape=st.lists(st.integers(1, 64), min_size=1, max_size=3).map(tuple),
        hidden_dim=st.integers(1, 512),
    )
)
def test_shipped_dummy_config_round_trips_with_default_allow_list(config: DummyConfig) -> None:
    assert from_plain(to_plain(config)) == config
    back = from_yaml(to_yaml(config))
    assert back == config
    assert type(back.action_shape) is tuple


def test_plain_form_is_class_path_and_init_args() -> None:
    plain = to_plain(sample_config())
    args = plain["init_args"]
    assert plain["class_path"] == f"{__name__}.Config"
    assert args["color"] == "green"
    assert args["shape"] == [3, 2]
    assert args["pair"] == [5, "x"]
    assert args["arrays"]["init_args"]["meta"] == [[pytest.approx(0.3)], [pytest.approx(0.4)]]
    assert args["arrays"]["init_args"]["i64"] == [2**40]
    assert args["leaves"] == [{"class_path": f"{__name__}.Leaf", "init_args": {"name": "a", "scale": 2.0}}]
    assert args["by_name"]["k"]["init_args"] == {"name": "b", "scale": -1.5}
    assert args["tree"]["init_args"]["children"][0]["init_args"]["children"][0]["init_args"]["value"] == 3


@pytest.mark.parametrize("name", ["typed", "meta", "f32", "i64", "f64"])
def test_each_array_declaration_restores_its_dtype(name: str) -> None:
    config = sample_config()
    back = from_yaml(to_yaml(config), allowed_packages=ALLOWED)
    expected = getattr(config.arrays, name)
    restored = getattr(back.arrays, name)
    assert restored.dtype == expected.dtype != np.dtype(object)
    assert restored.shape == expected.shape
    assert np.array_equal(restored, expected)


def test_plain_mapping_without_class_path_follows_the_hint() -> None:
    """The form Hydra YAML uses: no class_path, the caller's type hint says what to build."""
    back = from_plain({"action_shape": [3, 2], "hidden_dim": 8}, DummyConfig)
    assert back == DummyConfig(action_shape=(3, 2), hidden_dim=8)


# --------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("holder", "where"),
    [
        (Holder(encoder=Encoder(norm=object())), "config.encoder.norm"),
        (Holder(leaves=[1, {2, 3}]), "config.leaves[1]"),
        (Holder(by_name={"k": Encoder(norm=lambda x: x)}), "config.by_name.k.norm"),
        (Holder(by_name={"k": np.array([object()], dtype=object)}), "config.by_name.k"),
        (Holder(by_name={("tuple", "key"): 1}), "config.by_name"),
    ],
)
def test_unserializable_value_names_the_field_path(holder: Holder, where: str) -> None:
    for dump in (to_plain, to_yaml):
        with pytest.raises(SerializationError, match="cannot serialize") as caught:
            dump(holder)
        assert str(caught.value).startswith(f"{where}: ")
        assert "\n" not in str(caught.value)


def test_dict_keys_named_like_the_plain_form_stay_keys() -> None:
    config = sample_config()
    config.by_name = {"class_path": Leaf("z", 2.0), "init_args": Leaf()}
    assert_same(from_yaml(to_yaml(config), allowed_packages=ALLOWED), config)


def test_unknown_field_lists_the_valid_ones() -> None:
    plain = to_plain(sample_config())
    plain["init_args"]["leaves"][0]["init_args"]["colour"] = "red"
    with pytest.raises(SerializationError) as caught:
        from_plain(plain, allowed_packages=ALLOWED)
    message = str(caught.value)
    assert message.startswith("config.leaves[0]: unknown field(s) ['colour'] for Leaf")
    assert "valid: ['name', 'scale']" in message


def test_invalid_enum_value_lists_the_valid_ones() -> None:
    plain = to_plain(sample_config())
    plain["init_args"]["color"] = "purple"
    with pytest.raises(SerializationError) as caught:
        from_plain(plain, allowed_packages=ALLOWED)
    assert str(caught.value) == "config.color: 'purple' is not a valid Color; valid: ['red', 'green', 'blue']"


def test_wrong_tuple_length_is_refused() -> None:
    plain = to_plain(sample_config())
    plain["init_args"]["pair"] = [1, "a", "extra"]
    with pytest.raises(SerializationError, match=r"^config\.pair: expected 2 items, got 3$"):
        from_plain(plain, allowed_packages=ALLOWED)


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system"])
def test_python_yaml_tags_are_refused_and_nothing_runs(
    tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    monkeypatch.chdir(tmp_path)
    for text in (
        f'{tag} ["touch {marker}"]',
        f'class_path: {__name__}.Leaf\ninit_args:\n  name: {tag} ["touch {marker}"]\n',
    ):
        with pytest.raises(SerializationError, match="not valid YAML"):
            from_yaml(text, allowed_packages=ALLOWED)
    assert not marker.exists()


def test_class_path_outside_the_allow_list_is_refused_before_import(monkeypatch: pytest.MonkeyPatch) -> None:
    imported: list[str] = []
    real_import = importlib.import_module

    def recording_import(name: str, package: str | None = None) -> Any:
        imported.append(name)
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", recording_import)
    for class_path in ("os.system", "getiactionevil.Config", "subprocess.Popen"):
        with pytest.raises(SerializationError) as caught:
            from_plain({"class_path": class_path, "init_args": {}})
        assert str(caught.value) == (
            f"config.class_path: {class_path!r} is outside the allowed packages ['getiaction']; "
            "add its package to allowed_packages if you trust it"
        )
    # the same refusal applies to nested configs, even under an allowed parent
    nested = {"class_path": f"{__name__}.Config", "init_args": {"tree": {"class_path": "os.system"}}}
    with pytest.raises(SerializationError, match=r"^config\.tree\.class_path: 'os\.system' is outside"):
        from_plain(nested, allowed_packages=(__name__,))
    assert imported == [__name__]  # only the allowed parent's module was imported


def test_allowed_class_that_is_not_a_dataclass_is_refused() -> None:
    with pytest.raises(SerializationError, match=re.escape("'getiaction.errors.ConfigError' is not a dataclass")):
        from_plain({"class_path": "getiaction.errors.ConfigError", "init_args": {}})


def test_from_yaml_reports_broken_yaml() -> None:
    with pytest.raises(SerializationError, match=r"^config: not valid YAML \(\w+\)$"):
        from_yaml("a: [1, 2\nb: }")


def test_to_yaml_output_loads_with_safe_loader() -> None:
    text = to_yaml(sample_config())
    assert yaml.safe_load(text) == to_plain(sample_config())
