"""What the session tells its user about its fires: terminal summary, files."""
