"""``python -m flows``: the same CLI as the ``cxloop`` script."""

from flows.cli import app

app(prog_name="cxloop")
