"""The Textual app: live allocator state beside the model's prediction."""
