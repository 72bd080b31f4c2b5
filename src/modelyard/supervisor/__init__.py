"""The process next to the user's command (DESIGN.md "supervisor/", docs/protocol.md).

Modules, one responsibility each:
    config   CONFIG.json, the run folder layout, the job's environment
    runner   the job's process group: start, SIGTERM -> grace -> SIGKILL
    container  a job in an image: the runtime's argv, pull, stop and removal by name
    output   stdout/stderr line by line: log.txt, metric parsing, echo
    batch    the current batch and the on-disk spool, with sequence numbers
    reporter delivery of spooled batches to the server, with retries
    sampler  CPU/RSS of the process tree and NVML GPU usage
    sync     periodic and final output sync to the artifact store
    attempt  the order of it all, and how an ending maps to a reason
    main     ``python -m modelyard.supervisor`` and ``run_local``
"""
from modelyard.supervisor.attempt import Attempt, Outcome, run_attempt
from modelyard.supervisor.config import RunDirs, SupervisorConfig, job_env
from modelyard.supervisor.main import main, run_local

__all__ = ["Attempt", "Outcome", "RunDirs", "SupervisorConfig", "job_env", "main", "run_attempt", "run_local"]
