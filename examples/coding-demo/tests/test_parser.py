from src.parser import parse_int


def test_parse_plain():
    assert parse_int("42") == 42


def test_parse_zero():
    assert parse_int("0") == 0


def test_parse_negative():
    assert parse_int("-42") == -42


def test_parse_bad():
    try:
        parse_int("x")
    except ValueError:
        return
    assert False


def test_parse_spaces():
    assert parse_int(" 7 ") == 7
