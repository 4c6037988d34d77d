"""webmail_demo: an aiohttp webmail that reattaches to imapd with X-STATE on every request.

``webmail-demo --imap HOST:PORT [--listen HOST:PORT] [--reattach xstate|login]``; see docs/webmail.md.
"""
