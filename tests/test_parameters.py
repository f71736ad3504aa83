import numpy as np
import pytest

from bayescal.parameters import GROUPINGS, PFTS, Parameter, ParameterError, ParameterSpace


def make_space():
    return ParameterSpace([
        Parameter("vmax", np.linspace(30, 70, 9), 20.0, 100.0, "umol m-2 s-1", "carboxylation",
                  groups="pft9"),
        Parameter("kn", [0.5, 0.6, 0.4, 0.45], 0.3, 0.9, groups="pft4"),
        Parameter("coldthrs", [2.0, 4.0], [-3.0, 0.0], [8.0, 10.0], "degC", groups="pft2"),
        Parameter("gamma_w", 0.45, 0.0, 1.2),
        Parameter("soil", [1.0, 2.0], 0.5, 3.0, groups=["top", "deep"]),
    ])


def test_labels_and_counts():
    space = make_space()
    assert space.n_values == 9 + 4 + 2 + 1 + 2
    assert space.labels[2] == "vmax[BDL-EVG]"
    assert "kn[GRASS]" in space.labels and "coldthrs[NONTREE]" in space.labels
    assert "gamma_w" in space.labels and "soil[deep]" in space.labels
    assert len(set(space.labels)) == space.n_values


def test_unit_cube_round_trip_exact(rng):
    space = make_space().fix({"gamma_w": 0.5, "vmax[CROP-C4]": None})
    x = space.from_unit(rng.random((200, space.n_free)))
    assert np.max(np.abs(space.from_unit(space.to_unit(x)) - x)) <= 1e-12 * np.max(np.abs(x))
    u = rng.random((50, space.n_free))
    assert np.max(np.abs(space.to_unit(space.from_unit(u)) - u)) <= 1e-12
    # the bounds map to the corners of the cube
    np.testing.assert_allclose(space.to_unit(space.lower), 0.0, atol=1e-15)
    np.testing.assert_allclose(space.to_unit(space.upper), 1.0, atol=1e-15)


def test_flatten_unflatten_round_trip(rng):
    space = make_space()
    x = space.from_unit(rng.random((7, space.n_values)))
    parts = space.unflatten(x)
    assert parts["vmax"].shape == (7, 9) and parts["gamma_w"].shape == (7,)
    np.testing.assert_array_equal(space.flatten(parts), x)
    # missing families take their defaults
    only = space.flatten({"gamma_w": 0.9})
    assert only[space.all_labels.index("gamma_w")] == 0.9
    np.testing.assert_array_equal(only[:9], space["vmax"].default)


def test_fix_expand_reduce():
    space = make_space()
    fixed = space.fix({"vmax": None, "kn[NDL]": 0.7})
    assert fixed.n_free == space.n_values - 10
    assert "vmax[NDL-EVG]" not in fixed.labels
    full = fixed.expand(fixed.default)
    assert full[space.all_labels.index("kn[NDL]")] == 0.7
    np.testing.assert_array_equal(fixed.reduce(full), fixed.default)
    reduced = space.only(["vmax[BDL-EVG]", "gamma_w"])
    assert reduced.labels == ["vmax[BDL-EVG]", "gamma_w"]
    assert reduced.index("gamma_w") == 1


def test_per_pft_expansion():
    p4 = Parameter("kn", [1.0, 2.0, 3.0, 4.0], 0.0, 5.0, groups="pft4")
    np.testing.assert_array_equal(p4.per_pft(np.array([1.0, 2.0, 3.0, 4.0])),
                                  [1, 1, 2, 2, 2, 3, 3, 4, 4])
    p2 = Parameter("c", [1.0, 2.0], 0.0, 5.0, groups="pft2")
    np.testing.assert_array_equal(p2.per_pft(np.array([[1.0, 2.0]])), [[1] * 5 + [2] * 4])
    assert len(GROUPINGS["pft9"]) == len(PFTS) == 9


def test_toml_round_trip(tmp_path):
    space = make_space().fix({"gamma_w": 0.3, "kn[CROP]": None})
    path = tmp_path / "space.toml"
    space.to_toml(path)
    back = ParameterSpace.from_toml(path)
    assert back == space
    assert back.labels == space.labels
    assert back.fixed == space.fixed
    assert back["vmax"].units == "umol m-2 s-1"
    # a value's own problem (bounds the wrong way round) names the file it is in
    path.write_text("[parameters.eps]\ndefault = 0.15\nlower = 0.2\nupper = 0.1\n")
    with pytest.raises(ParameterError, match=r"space.toml: parameter 'eps': lower bound 0.2 is not below"):
        ParameterSpace.from_toml(path)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(name="vmax", default=50.0, lower=60.0, upper=60.0), "vmax"),
        (dict(name="vmax", default=50.0, lower=70.0, upper=60.0), "not below upper"),
        (dict(name="vmax", default=90.0, lower=20.0, upper=60.0), "outside bounds"),
        (dict(name="vmax", default=np.nan, lower=20.0, upper=60.0), "non-finite"),
        (dict(name="vmax", default=[1.0, 2.0], lower=0.0, upper=5.0, groups="pft9"), "9 groups"),
        (dict(name="vmax", default=1.0, lower=0.0, upper=5.0, groups="pft7"), "pft7"),
        (dict(name="bad name", default=1.0, lower=0.0, upper=5.0), "bad name"),
    ],
)
def test_parameter_errors_name_the_parameter(kwargs, fragment):
    with pytest.raises(ParameterError) as err:
        Parameter(**kwargs)
    assert fragment in str(err.value)
    if kwargs["name"] == "vmax":
        assert "vmax" in str(err.value)


def test_vector_error_names_the_group():
    with pytest.raises(ParameterError, match=r"vmax\[CROP-C3\].*outside bounds"):
        Parameter("vmax", [50.0] * 5 + [500.0] + [50.0] * 3, 20.0, 100.0, groups="pft9")


def test_space_errors_name_the_parameter():
    space = make_space()
    with pytest.raises(ParameterError, match="unknown parameter 'vcmax'"):
        space.fix(["vcmax"])
    with pytest.raises(ParameterError, match="unknown group 'TREE' for parameter 'kn'"):
        space.fix(["kn[TREE]"])
    with pytest.raises(ParameterError, match="unknown parameters \\['foo'\\]"):
        space.flatten({"foo": 1.0})
    with pytest.raises(ParameterError, match="'kn'.*expected 4 values"):
        space.flatten({"kn": [0.5, 0.5]})
    with pytest.raises(ParameterError, match="duplicate parameter names"):
        ParameterSpace([Parameter("a", 1.0, 0.0, 2.0), Parameter("a", 1.0, 0.0, 2.0)])
    with pytest.raises(ParameterError, match="fixed value 99.0 outside bounds"):
        space.fix({"gamma_w": 99.0})
    with pytest.raises(ParameterError, match="every parameter value is fixed"):
        space.fix(space.names)


def test_check_strict_names_offending_value():
    space = make_space()
    x = np.tile(space.default, (3, 1))
    x[2, space.labels.index("coldthrs[TREE]")] = 42.0
    with pytest.raises(ParameterError, match=r"coldthrs\[TREE\].*42.0 outside bounds"):
        space.check(x)
    space.check(x, strict=False)  # out of bounds is fine when not strict
    x[1, 0] = np.inf
    with pytest.raises(ParameterError, match=r"vmax\[NDL-EVG\].*not finite"):
        space.check(x, strict=False)
    with pytest.raises(ParameterError, match="shape"):
        space.check(np.zeros((2, 3)))


def test_toml_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[parameters.vmax]\ndefault = 50\nlower = 20\nupper = 90\ncolour = "red"\n')
    with pytest.raises(ParameterError, match=r"bad.toml: parameters.vmax has unknown keys \['colour'\]"):
        ParameterSpace.from_toml(bad)
    bad.write_text("[parameters.vmax]\ndefault = 50\n")
    with pytest.raises(ParameterError, match=r"parameters.vmax is missing \['lower', 'upper'\]"):
        ParameterSpace.from_toml(bad)
    with pytest.raises(ParameterError, match="does not exist"):
        ParameterSpace.from_toml(tmp_path / "nope.toml")


def test_to_dataarray_has_labels_and_bounds():
    space = make_space()
    da = space.to_dataarray(np.tile(space.default, (4, 1)))
    assert da.dims == ("member", "parameter")
    assert list(da["parameter"].values) == space.labels
    assert da["name"].values[0] == "vmax" and da["group"].values[0] == "NDL-EVG"
    np.testing.assert_array_equal(da["lower"].values, space.lower)


def test_from_unit_refuses_values_outside_the_cube_naming_the_parameter():
    space = ParameterSpace([Parameter("a", 1.0, 0.0, 2.0), Parameter("b", 5.0, 0.0, 10.0)])
    with pytest.raises(ParameterError, match="'b' is 1.5"):
        space.from_unit([0.5, 1.5])
    with pytest.raises(ParameterError, match="'a' is nan.*row 1"):
        space.from_unit([[0.5, 0.5], [np.nan, 0.5]])
    np.testing.assert_array_equal(space.from_unit([1 + 1e-12, -1e-12]), [2.0, 0.0])  # round-off clipped


def test_labels_are_parsed_in_one_place():
    from bayescal.parameters import family, split_label

    assert split_label("vmax[BDL-EVG]") == ("vmax", "BDL-EVG")
    assert split_label("gamma_w") == ("gamma_w", "")
    assert family("kn[GRASS-C3]") == "kn"
    with pytest.raises(ParameterError, match="not a parameter label"):
        split_label("vmax[")


def test_log_scaled_parameters_are_uniform_in_log_value(tmp_path):
    """REFLEX rates span orders of magnitude: u maps linearly onto log(value); round trips exact."""
    space = ParameterSpace([Parameter("k", 1e-3, 1e-6, 1e-2, scale="log"), Parameter("a", 0.5, 0.0, 1.0)])
    np.testing.assert_allclose(space.from_unit([0.5, 0.5]), [1e-4, 0.5], rtol=1e-12)
    np.testing.assert_allclose(space.from_unit([[0.0, 0.0], [1.0, 1.0]]), [[1e-6, 0.0], [1e-2, 1.0]])
    x = np.array([[3e-5, 0.2], [7e-3, 0.9]])
    np.testing.assert_allclose(space.from_unit(space.to_unit(x)), x, rtol=1e-12)
    assert space.to_unit([1e-5, 0.0])[0] == pytest.approx(0.25, abs=1e-12)
    space.to_toml(tmp_path / "s.toml")
    again = ParameterSpace.from_toml(tmp_path / "s.toml")
    np.testing.assert_allclose(again.to_unit(x), space.to_unit(x), rtol=1e-12)
    assert again.fix({"a": 0.3}).to_unit([1e-4])[0] == pytest.approx(0.5)
    with pytest.raises(ParameterError, match="needs lower > 0"):
        Parameter("k", 1.0, 0.0, 2.0, scale="log")
    with pytest.raises(ParameterError, match="scale"):
        Parameter("k", 1.0, 0.5, 2.0, scale="sqrt")
