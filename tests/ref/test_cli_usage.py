#!/usr/bin/env python3
"""Usage errors name the problem in the user's terms (issue 10, item 18): an unknown option with the
closest option of that command, an unknown command with the closest command, a repeated option, a
missing value, a missing command; each followed by the --help to read, exit status 2. Values refused by
our own parsers keep their messages."""
from common import check, finish, run


def usage(*args):
    """stderr of a command line that must fail as bad usage (exit status 2)."""
    return run(*args, expect=2).stderr


def expect(args, message, help_command):
    got = usage(*args)
    want = f"imgnorm: {message}\nRun '{help_command} --help' for usage.\n"
    check(got == want, f"{args}: {got!r}, expected {want!r}")


# Unknown options: the closest option of that command by edit distance (a swap counts as one edit).
expect(["stats", "--szie", "224", "x"], "unknown option --szie (did you mean --size?)", "imgnorm stats")
expect(["normalize", "x", "-o", "y", "--stast", "s.json"], "unknown option --stast (did you mean --stats?)",
       "imgnorm normalize")
expect(["normalize", "x", "-o", "y", "--fti"], "unknown option --fti (did you mean --fit?)", "imgnorm normalize")
expect(["merge", "a.json", "b.json", "--outptu", "c.json"], "unknown option --outptu (did you mean --output?)",
       "imgnorm merge")
expect(["stats", "x", "--szie=224"], "unknown option --szie (did you mean --size?)", "imgnorm stats")
# Among this command's options only: --fit belongs to normalize, stats has nothing close to it.
expect(["stats", "x", "--fit"], "unknown option --fit", "imgnorm stats")
# A unique beginning, a single dash for a long option.
expect(["stats", "x", "--exact"], "unknown option --exact (did you mean --exact-decode?)", "imgnorm stats")
expect(["stats", "x", "-size", "64"], "unknown option -size (did you mean --size?)", "imgnorm stats")
# Nothing close: no guess. One letter: too many neighbours to guess from.
expect(["stats", "x", "--colour"], "unknown option --colour", "imgnorm stats")
expect(["stats", "x", "-z"], "unknown option -z", "imgnorm stats")
expect(["--verison"], "unknown option --verison (did you mean --version?)", "imgnorm")

# Commands.
expect(["statz"], "unknown command statz (did you mean stats?)", "imgnorm")
expect(["normalise", "x"], "unknown command normalise (did you mean normalize?)", "imgnorm")
expect(["frobnicate"], "unknown command frobnicate (commands: stats, merge, normalize, denormalize or inspect)",
       "imgnorm")
expect([], "missing command: stats, merge, normalize, denormalize or inspect", "imgnorm")
expect(["--size", "64", "x"], "missing command before --size: stats, merge, normalize, denormalize or inspect",
       "imgnorm")

# Repeated options, missing values, missing required options, extra arguments.
expect(["stats", "--size", "16", "--size", "16", "x"], "option --size given 2 times (give it once)", "imgnorm stats")
expect(["normalize", "x", "-o", "a", "--output", "b"], "option --output given 2 times (give it once)",
       "imgnorm normalize")
expect(["stats", "x", "--size"], "option --size needs a value", "imgnorm stats")
expect(["stats", "x", "--size="], "option --size needs a value", "imgnorm stats")
expect(["stats", "x", "-j"], "option --threads needs a value", "imgnorm stats")
expect(["normalize", "x"], "missing option --output", "imgnorm normalize")
expect(["stats", "a", "b"], "unexpected argument 'b'", "imgnorm stats")

# Values checked by CLI11's validators keep its wording, with the command's --help.
expect(["stats", "x", "--format", "yaml"], "--format: yaml not in {table,json,torchvision,keras,lighting}",
       "imgnorm stats")

# Values refused by our own parsers keep their message (and print no usage line).
got = usage("stats", "x", "--resize", "blah")
check(got == "imgnorm: invalid resize mode 'blah' (expected stretch|crop|pad|none)\n", f"--resize blah: {got!r}")
got = usage("stats", "x", "--size", "0")
check(got == "imgnorm: invalid size '0' (expected N or WxH, 1 to 65535 pixels)\n", f"--size 0: {got!r}")

# Repeated flags stay accepted (-q -q is harmless), so the run gets as far as the missing folder.
p = run("stats", "/nonexistent-imgnorm-folder", "-q", "-q", expect=1)
check("no such folder" in p.stderr, f"-q -q: {p.stderr!r}")

finish()
