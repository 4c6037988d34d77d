"""imapd.server"""
