"""``python -m durable_state``: the ``durable-state`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
