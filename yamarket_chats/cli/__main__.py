"""``python -m yamarket_chats.cli``: the ``yamarket-chats`` command."""

from .app import main

if __name__ == "__main__":
    main()
