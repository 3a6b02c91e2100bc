"""A Python process where ``tfrs_kit`` cannot be imported, kept for the whole test session.

Serving checks ("the SavedModel answers with TensorFlow alone") used to start a fresh
interpreter each, paying seconds to import TensorFlow every time. ``FreshPython`` starts
one per set of preloaded ``imports`` (so a check that must work without ScaNN never runs
where ScaNN was imported) and runs each snippet there in new globals, with its own
``sys.argv`` and working directory, its standard output captured.

Run as a script, this file is the server: requests and answers are JSON lines.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from typing import NamedTuple

_ANSWER = "@@fresh_python@@ "


class Result(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


class FreshPython:
    """The client: ``run(code, argv=(), cwd=None) -> Result``, as ``python -c code``."""

    def __init__(self, imports: str = "", timeout: float = 300) -> None:
        self.timeout = timeout
        self._log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115  (closed in close())
        env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
        self._process = subprocess.Popen(
            [sys.executable, __file__, imports], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True,
            env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"})

    def run(self, code: str, argv: tuple[str, ...] = (), cwd: str | None = None) -> Result:
        request = {"code": code, "argv": list(argv), "cwd": cwd}
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except BrokenPipeError:
            return Result(-1, "", f"the server died:\n{self._server_log()}")
        while True:
            ready, _, _ = select.select([self._process.stdout], [], [], self.timeout)
            line = self._process.stdout.readline() if ready else ""
            if not line:
                self.close()
                return Result(-1, "", f"no answer from the server:\n{self._server_log()}")
            if line.startswith(_ANSWER):
                return Result(**json.loads(line[len(_ANSWER):]))

    def _server_log(self) -> str:
        self._log.seek(0)
        return self._log.read()[-5000:]

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=30)
        self._log.close()


def _serve(imports: str) -> None:
    import contextlib
    import io
    import traceback

    sys.modules["tfrs_kit"] = None  # type: ignore[assignment]  # importing it now fails
    exec(compile(imports + "\nimport tensorflow\n", "<imports>", "exec"), {})
    answers = sys.stdout
    home = os.getcwd()
    for line in sys.stdin:
        request = json.loads(line)
        out, err, code = io.StringIO(), io.StringIO(), 0
        sys.argv = ["-c", *request["argv"]]
        os.chdir(request["cwd"] or home)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                exec(compile(request["code"], "<string>", "exec"), {"__name__": "__main__"})
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
            except BaseException:
                traceback.print_exc()
                code = 1
        os.chdir(home)
        answer = {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
        answers.write(_ANSWER + json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    _serve(sys.argv[1])
