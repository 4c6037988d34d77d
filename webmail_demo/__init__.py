"""webmail_demo: an aiohttp webmail that reattaches to imapd with X-STATE on every request.

Not built yet: this package only reserves the console script. See the project's issue list.
"""
