"""The one domain exception and the exit codes the two scripts use."""

EXIT_OK = 0
EXIT_ERROR = 1  # the run stopped: nothing more could be done safely
EXIT_USAGE = 2  # bad input, refused by argparse before any work started
EXIT_DEVICES_FAILED = 3  # the run finished, but the platform rejected some devices
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


class FactoryError(Exception):
    """A problem the user can act on; `main` prints it as one line, with no traceback."""

    exit_code = EXIT_ERROR
