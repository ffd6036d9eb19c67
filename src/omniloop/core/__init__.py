"""Infrastructure every domain module shares: settings, database, errors, ids, clock, money."""
