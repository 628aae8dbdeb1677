"""Start a program with the umask and the open-file limit a scenario asks for (the labs'
server launcher, ``ServerSpec(umask=..., nofile=...)``). Stdlib only.

    python3 -m wraplab.actors.launch [--umask OCTAL] [--nofile N] -- PROGRAM [ARG...]

Sets the umask, and RLIMIT_NOFILE (soft and hard) to N, then ``execvp``-s PROGRAM in the
same process (same pid). A bad value or a limit that cannot be set is a clear error on
stderr and exit 2, before anything is started.
"""

import argparse
import os
import resource
import sys


def _octal(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an octal umask: {text!r}") from None
    if not 0 <= value <= 0o777:
        raise argparse.ArgumentTypeError(f"umask out of range: {text!r}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 16:
        raise argparse.ArgumentTypeError(f"too few files to start anything: {text!r}")
    return value


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="launch", description=__doc__.splitlines()[0])
    parser.add_argument("--umask", type=_octal)
    parser.add_argument("--nofile", type=_positive)
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("no program to start")
    if args.nofile is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, args.nofile))
        except (ValueError, OSError) as exc:
            sys.stderr.write(f"launch: cannot set RLIMIT_NOFILE to {args.nofile}: {exc}\n")
            sys.exit(2)
    if args.umask is not None:
        os.umask(args.umask)
    try:
        os.execvp(program[0], program)
    except OSError as exc:
        sys.stderr.write(f"launch: cannot start {program[0]}: {exc}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
