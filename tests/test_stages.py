"""The stage functions one rule at a time, on real files the tests write."""

import ast
from pathlib import Path

import pytest
from PIL import Image

from mnist_batch.discover import discover
from mnist_batch.errors import UserError
from mnist_batch.run_files import output_format
from mnist_batch.stats import wilson_interval


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("tree")
    for name in ("a/1.png", "a/2.JPG", "b/3.png", "b/c/4.tif", "notes.txt", ".hidden/5.png", "b/.6.png"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".txt"):
            path.write_text("not an image")
        else:
            Image.new("L", (8, 8)).save(path, format="PNG")
    return root


@pytest.mark.parametrize("include, exclude, expected", [
    ((), (), ["a/1.png", "a/2.JPG", "b/3.png", "b/c/4.tif"]),
    (("*.png",), (), ["a/1.png", "b/3.png"]),
    (("*.PNG", "*.JPG"), (), ["a/2.JPG"]),  # globs match names case-sensitively
    ((), ("*/b/*",), ["a/1.png", "a/2.JPG"]),
    (("*.png",), ("*/a/*",), ["b/3.png"]),
    ((), ("*.tif", "2.*"), ["a/1.png", "b/3.png"]),
])
def test_discover_filters(tree, include, exclude, expected):
    found = discover([str(tree)], include=include, exclude=exclude)
    assert [path[len(str(tree)) + 1 :] for path in found] == expected


@pytest.mark.parametrize("name, requested, expected", [
    ("p.parquet", None, "parquet"),
    ("p.PARQUET", None, "parquet"),
    ("p.csv", None, "csv"),
    ("p.txt", "csv", "csv"),
    ("p.csv", "csv", "csv"),
])
def test_output_format(tmp_path, name, requested, expected):
    assert output_format(tmp_path / name, requested) == expected


# p.csv with --format parquet: readers (report, polars, DuckDB) go by the name and would fail on it
@pytest.mark.parametrize("name, requested", [("p.txt", None), ("p", None), ("p.csv", "json"), ("p.csv", "parquet")])
def test_output_format_refuses(tmp_path, name, requested):
    with pytest.raises(UserError) as error:
        output_format(tmp_path / name, requested)
    assert error.value.exit_code == 2


# Reference values of the 95% Wilson score interval (Wilson 1927; as statsmodels' proportion_confint).
@pytest.mark.parametrize("correct, total, low, high", [
    (0, 10, 0.0, 0.27753),
    (10, 10, 0.72247, 1.0),
    (5, 10, 0.23659, 0.76341),
    (95, 100, 0.88825, 0.97846),
    (0, 0, 0.0, 0.0),
])
def test_wilson_interval(correct, total, low, high):
    assert wilson_interval(correct, total) == pytest.approx([low, high], abs=1e-5)


def imported_modules(module: str) -> set[str]:
    """The mnist_batch modules that `module`'s source imports, at the top or inside functions."""
    source = (Path(__file__).parent.parent / "mnist_batch" / f"{module}.py").read_text()
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mnist_batch"):
            names |= {node.module} if node.module != "mnist_batch" else {f"mnist_batch.{a.name}" for a in node.names}
    return names


def test_imports_point_one_way_from_the_dispatcher_to_the_engines_to_options():
    assert {"mnist_batch.classify", "mnist_batch.ray_engine"} <= imported_modules("engines")
    assert "mnist_batch.options" in imported_modules("classify") & imported_modules("ray_engine")
    assert not imported_modules("options") & {"mnist_batch.classify", "mnist_batch.ray_engine", "mnist_batch.engines"}
    for engine in ("classify", "ray_engine"):
        assert "mnist_batch.engines" not in imported_modules(engine)
    assert "mnist_batch.engines" in imported_modules("cli") & imported_modules("api")
