"""Several backends on one shared mail root, coordinated over Redis (``[cluster]``, docs/cluster.md).

``keys.py`` names every key and channel and the change message (what proxies read too); ``scripts.py``
holds the Lua that makes a lease decision atomic; ``node.py`` is one server process's link to Redis:
liveness, user ownership, the change channel, and the cluster-wide login and X-STATE records.
"""
