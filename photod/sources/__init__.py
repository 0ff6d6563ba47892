"""Where files come from.  Sources only produce paths; they never decide where a file goes."""
