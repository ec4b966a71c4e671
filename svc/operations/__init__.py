"""What an operator runs beside (or instead of) the service: key rotation, backup and restore."""
