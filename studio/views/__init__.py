"""The views: image canvases, trajectory, diversity gallery, compare grid, playground, messages."""
