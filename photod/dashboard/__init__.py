"""The local dashboard the daemon serves: what is safe, what is not yet and why, in
pictures, and restores by browsing.  Loopback only, behind a login link that only this
user can make (``auth``); pages read the same catalog, status and events as the CLI.
"""
