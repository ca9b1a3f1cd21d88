"""pytest-dcfire: burn a data center during a pytest test."""
