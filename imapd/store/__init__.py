"""imapd.store"""
