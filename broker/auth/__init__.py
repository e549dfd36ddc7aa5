"""Who is calling: tokens, their scopes, and the principal a request acts as."""
