"""Plumbing shared by the absl tools: the console-script entry point, progress and reports."""

import sys

from absl import app, flags


def log(message: str):
    """A progress line on stderr (stdout carries the tool's tables)."""
    print(message, file=sys.stderr, flush=True)


def run(main, module_name: str, doc: str):
    """Run an absl `main` as a console script: absl's --help lists the flags of the main module
    (sys.argv[0]), which under a console script is the wrapper, so declare the tool module's
    flags as its key flags and use the tool's docstring as the usage text."""
    for flag in flags.FLAGS.get_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    sys.modules["__main__"].__doc__ = doc
    app.run(main)



def write_report(path: str, title: str, body: str, tool: str):
    """Write a markdown report atomically, headed by the command line that made it."""
    import tfquant
    command = " ".join([tool] + sys.argv[1:])
    tfquant.save_atomically(f"# {title}\n\nMade by `{command}`{body}\n".encode(), path)
