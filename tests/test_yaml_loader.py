"""The strict YAML loader: data only, positions kept, hostile documents refused with a located message."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_module.errors import ConfigError
from mlops_module.spec.yaml_loader import MAX_BYTES, dotted, load_file, load_text


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "m.yaml")
    return [str(p) for p in info.value.problems]


def test_positions_of_values_and_keys() -> None:
    doc = load_text("a:\n  b: [1, x]\n  c: {d: true}\n", "m.yaml")
    assert doc.data == {"a": {"b": [1, "x"], "c": {"d": True}}}
    assert doc.position(("a", "b", 1)) == (2, 10)
    assert doc.position(("a", "c", "d")) == (3, 10)
    assert doc.position(("a", "c", "d"), at_key=True) == (3, 7)
    assert doc.position(("a", "missing")) == (1, 1)  # nearest ancestor: the key 'a'


def test_yaml_12_scalars_on_yes_dates_stay_strings() -> None:
    doc = load_text("on: [drift]\nyes: no\nwhen: 2024-01-01\nv: 3.10\nn: ~\nt: True\nhex: 0x1f\n")
    assert doc.data == {"on": ["drift"], "yes": "no", "when": "2024-01-01", "v": 3.1, "n": None, "t": True,
                        "hex": 31}
    assert doc.raw[("v",)] == "3.10"


def test_duplicate_keys_are_errors() -> None:
    assert problems("a: 1\nb: 2\na: 3\n") == ["m.yaml:3:1: a: duplicate key 'a' (first defined on line 1)"]


@pytest.mark.parametrize(
    "text",
    [
        "a: !!python/object/apply:os.system ['touch /tmp/pwned']\n",
        "a: !!python/name:os.system\n",
        "a: !custom x\n",
        "a: !!binary aGVsbG8=\n",
        "a: !!set {x, y}\n",
    ],
)
def test_tags_are_refused(text: str) -> None:
    (message,) = problems(text)
    assert message.startswith("m.yaml:1:4: a: YAML tag ")
    assert "not allowed" in message
    assert not Path("/tmp/pwned").exists()


def test_alias_bomb_is_refused() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    (message,) = problems("\n".join(lines) + "\n")
    assert message.startswith("m.yaml:5:5: (root): document expands to more than 100000 nodes (aliases?)")


def test_reasonable_aliases_and_merge_keys_work() -> None:
    doc = load_text("base: &b {cores: 1, memory: 2g}\nother:\n  <<: *b\n  memory: 4g\n")
    assert doc.data["other"] == {"cores": 1, "memory": "4g"}


def test_recursive_alias_is_refused() -> None:
    (message,) = problems("a: &x [1, *x]\n")
    assert message == "m.yaml:1:4: (root): recursive alias: a node contains itself"


def test_too_deep_is_refused() -> None:
    (message,) = problems("a: " + "[" * 200 + "]" * 200 + "\n")
    assert message.startswith("m.yaml:1:") and "(root): nesting deeper than 64 levels" in message


def test_multiple_documents_are_refused() -> None:
    (message,) = problems("a: 1\n---\nb: 2\n")
    assert message.startswith("m.yaml:2:1: (root): invalid YAML: only one YAML document")


def test_syntax_error_is_located() -> None:
    (message,) = problems("a:\n  b: [1, 2\nc: 3\n")
    assert message.startswith("m.yaml:3:")
    assert "invalid YAML" in message


def test_file_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (MAX_BYTES + 10) + "\n")
    with pytest.raises(ConfigError) as info:
        load_file(big)
    assert str(info.value) == f"{big}:1:1: (root): file is {big.stat().st_size} bytes; the limit is 1048576"


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_file(tmp_path / "nope.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00a")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_file(binary)


def test_dotted_paths() -> None:
    assert dotted(("spark", "conf", "spark.master")) == 'spark.conf["spark.master"]'
    assert dotted(("quality_gate", "metrics", 0, "min")) == "quality_gate.metrics[0].min"
    assert dotted(()) == "(root)"


def test_tags_on_keys_are_refused() -> None:
    (message,) = problems("!!python/object/apply:os.system train: 1\n")
    assert message.startswith("m.yaml:1:1: (root): YAML tag ") and "not allowed" in message


@pytest.mark.parametrize("escaped", ["\\x00", "\\ud800", "\\x1b[31m"])
def test_control_characters_are_refused(escaped: str) -> None:
    (message,) = problems(f'a: "x{escaped}"\n')
    assert message.startswith("m.yaml:1:4: a: contains the control character")


def test_tabs_and_newlines_are_text() -> None:
    assert load_text('a: "tab\\tand\\nnewline"\n').data == {"a": "tab\tand\nnewline"}


def test_huge_integers_are_refused() -> None:
    (message,) = problems("a: " + "9" * 30 + "\n")
    assert message.startswith("m.yaml:1:4: a: the integer 999") and "too large" in message
    (message,) = problems("a: 0x" + "f" * 4000 + "\n")
    assert "too large" in message


def test_endless_files_are_read_only_up_to_the_limit() -> None:
    with pytest.raises(ConfigError) as info:
        load_file(Path("/dev/zero"))
    assert "the limit is 1048576" in str(info.value)
