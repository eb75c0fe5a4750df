"""KeyChest's own database backends (configured by keychest.env.parse_database_url)."""
