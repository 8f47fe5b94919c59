"""Benchmark rows: the runner imports every module of this package, in name order.

To add rows, create ``suite/rows/<topic>.py`` and decorate functions with
``@row("<name>", group="creditbook")``, using the names in ``suite.targets`` for rows the
targets refer to. A row gets a ``RunContext`` (``ctx.seconds``, ``ctx.pg``,
``ctx.fixture()`` for run-wide setup with teardown, ``ctx.row_dir()`` for files,
``ctx.add_audit()``) and returns a ``RowResult``; ``suite.load.run_workers`` and
``suite.wrk.run_wrk`` build one for in-process and HTTP loads. Rows run in registration
order: module name, then decorator order within the module.
"""
