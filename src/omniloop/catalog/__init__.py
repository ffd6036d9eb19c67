"""The brand's product catalogue: what stores sell, in which category, at what price."""
