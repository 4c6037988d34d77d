"""``imapd proxy``: IMAP in front of several backends (docs/cluster.md).

server.py (the process), session.py (one client: PROXY header, pre-auth, attach, relay), preauth.py (the
answers before login), credentials.py (verify, mint tokens), backend_link.py (one backend connection),
link_pool.py (backend connections opened ahead), backends.py (the backends: health, drain, choice), coordination.py (Redis), tracker.py (what the relay knows),
hibernation.py (detached sessions), recovery.py (backend loss and drain), control.py (the admin socket).
"""
