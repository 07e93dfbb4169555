"""The command-line layer every entry point shares; it depends on nothing else in the project.

- :mod:`gtmsm_cli.flags`: documented dataclass fields become checked flags; one-line errors, exit 2;
  :func:`~gtmsm_cli.flags.flag_text` words a library's field-named error with the flags;
- :mod:`gtmsm_cli.checks`: outputs, memory and threads checked before a run starts;
- :mod:`gtmsm_cli.inputs`: input files checked before they are opened (no FIFOs or devices) and
  ``.npy``/``.npz`` headers checked against memory before any array is loaded;
- :mod:`gtmsm_cli.signals`: Ctrl-C and SIGTERM end a run with one line and exit 130 / 143.
"""
