"""Who may use Vitrine: API keys, admin users and their sessions."""
