"""``webmail-demo`` entry point. The webmail is not built yet; say so plainly instead of pretending."""

from __future__ import annotations

import sys


def main() -> int:
    print("webmail-demo: the webmail is not built yet; use any IMAP client against `make demo`.",
          file=sys.stderr)
    return 69  # EX_UNAVAILABLE


if __name__ == "__main__":
    raise SystemExit(main())
