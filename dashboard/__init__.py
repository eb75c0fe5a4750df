"""The team's pages: dashboard, shared components, template filters and the user's time zone."""
