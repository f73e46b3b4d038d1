"""``python -m yamarket_chats``: the ``yamarket-chats`` command.

The console script's own entry (`._entry`): signals are caught before any
heavy import, and the CLI is loaded only then.
"""

from ._entry import main

if __name__ == "__main__":
    main()
