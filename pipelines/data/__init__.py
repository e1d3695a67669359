"""The data layer: The Well's format (reading, writing, validation), windows of
trajectories, latent caches."""
