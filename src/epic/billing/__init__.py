"""Money: prices, quotes and currency display."""
