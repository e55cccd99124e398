"""Parses integers from user input."""


def parse_int(text):
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    return int(text)
