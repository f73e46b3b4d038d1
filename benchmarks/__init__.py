"""Benchmarks of yamarket_chats against hand-written and generated clients.

Run ``python -m benchmarks`` (see ``benchmarks/README.md``).
"""
