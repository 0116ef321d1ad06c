"""Data in and out: Fashion-MNIST and the demo set (`data`), image files (`imageio`),
grids, trajectories and metrics with embedded recipes (`export`)."""
