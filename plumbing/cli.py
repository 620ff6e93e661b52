"""Command-line pieces: a parser whose bad flag is one line and exit code 2, an error as one line."""
from __future__ import annotations

import argparse
import sys


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line on stderr and exit code 2 (argparse's own prints the usage
    too): `{prog}: error: {message}`, or `{error_prefix}: {message}` for a command whose other errors
    carry a short prefix of their own.

    `raises`: an exception class raised with the message instead, for a command whose main prints
    every input error (a bad flag or a bad file) the same way and returns 2 itself.
    """

    def __init__(self, *args, error_prefix: str | None = None,
                 raises: type[Exception] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_prefix = f"{self.prog}: error" if error_prefix is None else error_prefix
        self.raises = raises

    def error(self, message):
        if self.raises is not None:
            raise self.raises(message)
        sys.stderr.write(f"{self.error_prefix}: {message}\n")
        sys.exit(2)


def one_line(e: BaseException) -> str:
    """An error as the one line a CLI prints before exiting 2: its first line, whitespace collapsed
    (the exception's type when it has no message)."""
    text = str(e).strip() or type(e).__name__
    return " ".join(text.split("\n")[0].split())
