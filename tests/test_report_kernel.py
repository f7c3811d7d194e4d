"""How an analysis script's kernel is run and stopped."""

from __future__ import annotations

import os
from pathlib import Path

import dmi_eval.report as report


def test_the_kernel_is_killed_not_asked_to_shut_down(tmp_path, monkeypatch):
    """A graceful shutdown lets ipykernel 7 publish an "idle" status on a socket it is
    closing; the resulting traceback lands on the user's stderr (it failed CI once).
    Killing the kernel after execute() loses nothing: every output has arrived."""
    built = []

    class RecordingClient(report.NotebookClient):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(report, "NotebookClient", RecordingClient)
    script = tmp_path / "tiny.py"
    script.write_text("# %% [markdown]\n# Title\n\n# %%\nprint(answer * 2)\n", encoding="utf-8")
    markdown = report.run_analysis(script, {"answer": 21}, tmp_path / "out" / "tiny.md")

    assert "42" in markdown.read_text(encoding="utf-8")
    (client,) = built
    assert client.shutdown_kernel == "immediate"
    assert client.km is None  # cleaned up: no kernel left running
    if os.name != "nt":
        # sockets are files in a private folder, not TCP ports another process can take
        # between jupyter_client choosing them and the kernel binding them (CI saw that once)
        sockets = Path(client.config.KernelManager.ip)
        assert client.config.KernelManager.transport == "ipc"
        assert sockets.is_absolute() and not sockets.parent.exists()  # removed with its folder
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["tiny.html", "tiny.md"]  # nothing of the kernel's in the report folder
