"""Manager: Raft store, control API, leader loops (orchestrator, allocator, dispatcher), CA."""
