"""Pure task placement: filters that explain, binpack and spread scorers. No I/O."""
