"""Services: what the command line and the web layer call; they use vision, index and catalog."""
