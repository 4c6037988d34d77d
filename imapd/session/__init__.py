"""imapd.session"""
