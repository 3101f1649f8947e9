"""graddrop-sweep: a grid of methods x drop rates x seeds run through the trainer, then
one table (mean and std per language, paired difference to `full`), plots and JSON."""
