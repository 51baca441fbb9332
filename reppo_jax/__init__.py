"""JAX backend of REPPO."""
