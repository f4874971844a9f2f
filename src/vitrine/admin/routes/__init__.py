"""The admin UI's pages, one router per page."""
