"""The errors a run reports to its user: each is one line (an app prints it and exits with its status)."""


class UsageError(ValueError):
    """A bad choice of run (preset, dataset, option) or run directory: exit status 2."""


class DiskFull(UsageError):
    """No room on the device for a run's file: one line naming it, exit status 2; the run resumes once there is."""

    def __init__(self, path, needed=None, free=None):
        amounts = "" if needed is None else f" (about {needed / 2**20:.1f} MiB needed, {free / 2**20:.1f} MiB free)"
        super().__init__(f"no space left on device for {path}{amounts}; free some space and run the same command "
                         "again: it resumes after the last saved epoch")


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or Inf: exit status 1."""
