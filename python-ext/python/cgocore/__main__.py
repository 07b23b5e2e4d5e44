"""`cgocore`, the command the wheel installs: the same Rust command line as
the cgocore binary, plus `cgocore debugger-init gdb|lldb [--path]`, which
prints the line that loads this installation's debugger commands (for
~/.gdbinit or ~/.lldbinit; `--path`: just the file)."""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_SCRIPTS = {
    "gdb": ("source %s", "gdb_commands.py"),
    "lldb": ("command script import %s", "lldb_commands.py"),
}


def _debugger_init(args):
    usage = "usage: cgocore debugger-init gdb|lldb [--path]"
    if not args or args[0] not in _SCRIPTS or any(a != "--path" for a in args[1:]):
        print(usage, file=sys.stderr)
        return 2
    line, name = _SCRIPTS[args[0]]
    path = os.path.join(_HERE, name)
    print(path if "--path" in args else line % path)
    return 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["debugger-init"]:
        sys.exit(_debugger_init(args[1:]))
    from ._cgocore import cli_main

    sys.exit(cli_main(["cgocore"] + args))


if __name__ == "__main__":
    main()
