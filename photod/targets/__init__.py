"""Places that hold replicas.  Every kind implements ``base.Target``."""
