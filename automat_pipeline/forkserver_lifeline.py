"""Preloaded first by the conversions' forkserver, and imported nowhere else: the forkserver dies
with the run worker that started it, and so each conversion child with it (``die_with`` in
``cad._child``). Without it a killed worker's conversion ran on: the child holds the worker's end
of the pipe whose closing tells the forkserver to exit, so neither ever noticed (found by the fault
suite, tests/test_faults.py)."""

import os

from automat_pipeline.lifeline import die_with

die_with(os.getppid())
