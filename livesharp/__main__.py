"""``python -m livesharp`` and the ``livesharp`` command: the CLI, with Ctrl-C handled from the first instant.

The CLI's own handler (``cli._Group``) only exists once click and the CLI module are imported;
a Ctrl-C while they load (a second or more on a cold disk) would otherwise print Python's
traceback. So the entry point is this small function, which imports them inside the guard.
"""

import sys

INTERRUPTED = "interrupted: stopped during start-up; nothing was written"


def main() -> None:
    try:
        from .cli import cli
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        sys.exit(130)
    cli()


if __name__ == "__main__":
    main()
