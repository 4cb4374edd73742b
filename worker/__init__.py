"""Worker agent: manager session, task controllers, runtimes (process, sim)."""
