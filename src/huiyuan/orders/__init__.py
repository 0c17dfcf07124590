"""Orders (consumption data): stores, products, orders, refunds."""
