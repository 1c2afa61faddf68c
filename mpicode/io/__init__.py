"""I/O: the HDF5 run log, checkpoints, datasets, dataset import, the disk watchdog."""
