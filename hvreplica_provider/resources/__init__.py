"""Dynamic resources: one module per resource, each holding its Args, Provider and Resource."""
