"""Console-script entry points: thin argument parsing over the library."""
