"""lost_writes with values read back in another form than written: strings and bytes from
Redis or HTTP, a `key=` to map both sides, and a message that says what was compared."""

from __future__ import annotations

import pytest

from pytest_dcfire.history import History, Op, lost_writes


def acknowledged(*values: object, key: object = None) -> History:
    return History(
        [
            Op("write", v, type="ok", invoke=float(i), complete=i + 0.1, key=key)  # type: ignore[arg-type]
            for i, v in enumerate(values)
        ]
    )


def test_strings_read_back_are_matched_to_the_integers_written() -> None:
    history = acknowledged(*range(1, 21))
    result = history.lost_writes([str(n) for n in range(1, 19)])  # 19 and 20 lost
    assert [op.value for op in result.lost] == [19, 20]
    assert result.phantoms == ()
    assert "18 value(s) read back as str compared as the integers written" in result.compared
    assert "compared: 18 value(s) read back as str" in str(result)


def test_bytes_read_back_are_matched_too() -> None:
    result = acknowledged(1, 2, 3).lost_writes([b"1", b"2", b"3", b"99", b"x"])
    assert result.lost == ()
    assert result.phantoms == ("99", "x")  # a history keeps bytes as text


def test_only_the_exact_string_form_of_an_integer_is_coerced() -> None:
    result = acknowledged(7).lost_writes(["007"])
    assert [op.value for op in result.lost] == [7]
    assert result.phantoms == ("007",)


def test_strings_written_are_not_coerced() -> None:
    result = acknowledged("1", "2").lost_writes(["1", "2"])
    assert result.ok and result.compared == ""


def test_a_key_maps_both_sides() -> None:
    history = acknowledged(*range(1, 6))
    read = [{"id": n, "at": "12:00"} for n in (1, 2, 4, 5)]
    result = history.lost_writes(read, key=lambda v: v["id"] if isinstance(v, dict) else v)
    assert [op.value for op in result.lost] == [3]
    assert "through key=<lambda>" in result.compared


def test_key_int_and_values_it_refuses() -> None:
    result = acknowledged(1, 2).lost_writes(["1", "2", "junk"], key=int)
    assert result.lost == () and result.phantoms == ("junk",)
    assert "key=int" in str(result)


def test_when_nothing_matches_because_of_types_the_message_says_what_was_compared() -> None:
    history = acknowledged(1.0, 2.0, 3.0)
    result = history.lost_writes(["1.0", "2.0", "3.0"])
    assert len(result.lost) == 3 and len(result.phantoms) == 3
    text = str(result)
    assert "nothing matched: the values written are float (e.g. 1.0)" in text
    assert "the values read back are str (e.g. '1.0')" in text
    assert "key=" in text


def test_keys_of_another_type_are_named_when_nothing_matches() -> None:
    history = acknowledged(1, 2, key="1")
    result = history.lost_writes({1: [1, 2]})
    assert not result.ok
    assert "the writes' keys are str (e.g. '1'), the keys read back are int" in result.compared


def test_a_partial_match_gives_no_type_hint() -> None:
    result = acknowledged(1, 2, 3).lost_writes([1, 2, "three"])
    assert [op.value for op in result.lost] == [3]
    assert result.compared == ""


def test_the_workload_and_the_drill_take_key_too() -> None:
    from pytest_dcfire.history import Workload

    with Workload(lambda n: None, threads=1, interval=0, limit=5) as wl:
        wl.join(5)
    assert wl.history.lost_writes([str(n) for n in range(1, 6)]).ok

    def number(value: object) -> int:
        return int(str(value).removeprefix("v"))

    assert lost_writes(wl.history, [f"v{n}" for n in range(1, 6)], key=number).ok


@pytest.mark.parametrize("name", ["Fail", "Indeterminate"])
def test_fail_and_indeterminate_import_from_the_package_and_from_history(name: str) -> None:
    import pytest_dcfire
    import pytest_dcfire.history

    assert getattr(pytest_dcfire, name) is getattr(pytest_dcfire.history, name)
    assert name in pytest_dcfire.__all__
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        pytest_dcfire.Nope  # noqa: B018
