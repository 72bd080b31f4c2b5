"""The ``modelyard`` command line: thin Typer commands over :class:`modelyard.client.Client`.

    main.py     the Typer ``app`` and the list of commands
    errors.py   the root group: every error becomes one ``error: ...`` line and an exit code
    options.py  pure parsing of flags into a job spec (``--env K=V``, the command, YAML);
                the spec itself and the snapshot are ../submission.py's, which the SDK shares
    output.py   JSON, Rich tables and progress bars
    connect.py  which server: Client.from_env (MODELYARD_URL, else the embedded server)
    follow.py   printing a log once or live (read by ../joblog.py), and the exit code a job maps to
    submit.py   submit (snapshot, upload, create) and run --local
    code.py     a folder snapshotted and uploaded (submit, clone --code)
    datasets.py dataset create, ls, show, rm, download
    jobs.py     jobs, show, stop, restart, clone, wait
    observe.py  logs, metrics, download
    admin.py    server, user create
"""
