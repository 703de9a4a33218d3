"""``python -m fastmbrl``: the same as the ``fastmbrl`` command."""
from fastmbrl.cli import main

raise SystemExit(main())
