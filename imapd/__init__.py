"""imapd: an asyncio IMAP4rev1 server over Maildir, built for webmail."""

__version__ = "0.1.0"
