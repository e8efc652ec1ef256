"""``python -m getiaction_export``: see :mod:`getiaction_export.cli`."""

from getiaction_export.cli import main

if __name__ == "__main__":
    main()
