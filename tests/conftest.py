"""Shared test set-up."""

import signal

# A test run started in the background of a non-interactive shell (``nohup pytest &``) starts with SIGINT
# ignored, and every subprocess a test starts would inherit that (an ignored signal survives exec): the
# Ctrl-C tests would fail for the launcher's sake. A handler (not SIG_IGN) is reset to the default at exec.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
