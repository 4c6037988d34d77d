"""imapd.protocol"""
