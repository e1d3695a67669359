"""The registered models' runtime, shipped with every registered version: it imports only
``models`` and what the version declares."""
