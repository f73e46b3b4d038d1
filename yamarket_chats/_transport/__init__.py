"""The request loop behind `ChatsClient`, in three modules with one job each.

- `retry`: what an attempt came to and what the call does next (pure functions);
- `sessions`: which aiohttp session a request takes (the only code touching aiohttp's privates);
- `loop`: `Transport`, the staged loop (acquire, attempt, classify, decide) that uses them.

Nothing is imported here, so the stats can use `retry`'s vocabulary without
loading the loop.
"""
