"""callback_router package."""
