"""The Redis state layer: the only code of the producer that talks to Redis.

``fleet.Fleet`` (connection, scripts, consistent reads, lane storage) is the entry point;
``keys`` names every key; ``scripts`` wraps each Lua script of ``lua/``; ``control``,
``stream``, ``bloom``, ``ratelimit``, ``outcomes`` and ``status`` are the concepts kept in
Redis. redis-py errors become ``producer_tasks.errors.StateError`` here.
"""
