"""Runs several ``examples/`` scripts in one Python process, one after another.

Importing TensorFlow costs seconds per process; ``tests/test_examples.py`` pays it once.
Each script runs as ``__main__`` with its own ``sys.argv``, working directory and fresh
globals; its file descriptors 1 and 2 go to files (so that the output of the processes it
starts is captured too).

    python tests/examples_runner.py JOBS.json RESULTS.json

JOBS.json: a list of ``{"script", "args", "cwd", "stdout", "stderr"}``; RESULTS.json gets
one return code per job (0 when the script ran through or exited with status 0).

A script's ``subprocess.run([sys.executable, "-c", CODE], ...)`` (the examples show
serving "by TensorFlow alone" that way) runs CODE here too, in fresh globals, instead of
importing TensorFlow in one more process: that the exported SavedModels serve in a
process without tfrs_kit is tested by ``tests/index`` and ``tests/ranking``.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
import traceback

_RUN = subprocess.run


def _run_python_here(args, *rest, **kwargs):
    """``subprocess.run`` for the scripts: ``python -c CODE`` is executed in this process."""
    if (isinstance(args, (list, tuple)) and len(args) == 3 and args[0] == sys.executable
            and args[1] == "-c"):
        exec(compile(args[2], "<python -c>", "exec"), {"__name__": "__main__"})
        sys.stdout.flush()
        return subprocess.CompletedProcess(args, 0)
    return _RUN(args, *rest, **kwargs)


def _run(script: str, args: list[str], cwd: str, stdout: str, stderr: str) -> int:
    saved_fds = os.dup(1), os.dup(2)
    saved_cwd, saved_argv, saved_path = os.getcwd(), sys.argv, list(sys.path)
    with open(stdout, "w") as out, open(stderr, "w") as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            os.chdir(cwd)
            sys.argv = [script, *args]
            sys.path.insert(0, os.path.dirname(script))  # as `python script.py` does
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = 0 if exit_.code in (None, 0) else 1
            if code:
                print(f"SystemExit: {exit_.code}", file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved_fds[0], 1)
            os.dup2(saved_fds[1], 2)
            os.close(saved_fds[0])
            os.close(saved_fds[1])
            os.chdir(saved_cwd)
            sys.argv, sys.path[:] = saved_argv, saved_path
    if "tensorflow" in sys.modules:  # no Keras names or graphs carried to the next script
        sys.modules["tensorflow"].keras.backend.clear_session()
    return code


def main() -> None:
    jobs_path, results_path = sys.argv[1:3]
    with open(jobs_path) as file:
        jobs = json.load(file)
    subprocess.run = _run_python_here
    codes = [_run(**job) for job in jobs]
    with open(results_path, "w") as file:
        json.dump(codes, file)


if __name__ == "__main__":
    main()
